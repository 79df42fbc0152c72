"""ACME against a real ACME server on loopback (Debian's pebble): order for a name and an IP,
serve the issued chain, renew under load without a failed request, CA unreachable, a taken
challenge port, TLS-ALPN-01."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests import pebble_server
from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command

pytestmark = pytest.mark.skipif(not pebble_server.available(), reason="pebble not installed (scripts/system-deps.sh)")

NAME = "sklad.example.ru"  # resolved to 127.0.0.1 by pebble-challtestsrv's DNS


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[pebble_server.Pebble]:
    server = pebble_server.start_pebble(tmp_path / "pebble", http_port=free_port())
    yield server
    server.stop()


def acme_section(pebble: pebble_server.Pebble, **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "directory": pebble.directory, "challenge_listen": pebble.http_port,
            "ca_bundle": str(pebble.ca_bundle), "allow_private": True, **extra}


def served_sha256(port: int, trust: Path, server_name: str) -> str:
    ctx = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def wait_for_issued(gw: RunningGateway, port: int, trust: Path, name: str, timeout: float = 60) -> str:
    """The fingerprint once the CA's certificate serves (the placeholder does not verify)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return served_sha256(port, trust, name)
        except (ssl.SSLError, OSError) as e:
            last = e
            if gw.process.poll() is not None:
                break
            time.sleep(0.2)
    raise AssertionError(f"no certificate from pebble was served ({last}); log:\n{gw.log()[-3000:]}")


def test_order_serve_renew_under_load_and_ca_down(
    pebble: pebble_server.Pebble, standin: Standin, tmp_path: Path,
    gateway_factory: Callable[..., RunningGateway],
) -> None:
    config = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", tls={"acme": [NAME, "127.0.0.1"]})],
                            acme=acme_section(pebble, email="admin@example.ru"))
    gw = gateway_factory(config)
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root_pem())
    port = gw.port("b1")
    first = wait_for_issued(gw, port, root, NAME)
    # The whole chain is served: a client trusting only pebble's root connects, by name and by IP.
    assert served_sha256(port, root, "127.0.0.1") == first
    assert served_sha256(gw.port("b1", "print"), root, NAME) == first
    trust = ssl.create_default_context(cafile=str(root))
    assert httpx.get(gw.url("b1", path="/api/v1/DocTypes"), verify=trust).status_code == 200

    acme_dir = gw.state_dir / "acme"
    [account_key] = list(acme_dir.glob("account-*.key"))
    assert account_key.stat().st_mode & 0o077 == 0
    assert (acme_dir / "bases" / "b1" / "certificate.pem").stat().st_mode & 0o077 == 0
    status = run_gateway_command(gw.directory, "cert", "acme", "status")
    assert status.returncode == 0, status.stderr
    assert "Pebble Intermediate" in status.stdout and NAME in status.stdout and "Last error:   none" in status.stdout

    # The account record is lost (the key stays): the next order finds the same account again.
    [account_record] = list(acme_dir.glob("account-*.json"))
    account_uri = account_record.read_text()
    account_record.unlink()
    key_before = account_key.read_bytes()

    # Forced renewal while requests keep coming, each on a new connection: none may fail.
    failures: list[str] = []
    done = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                r = httpx.get(gw.url("b1", path="/api/v1/DocTypes"), verify=trust, timeout=10)
                if r.status_code != 200:
                    failures.append(str(r.status_code))
            except httpx.HTTPError as e:
                failures.append(repr(e))
            done += 1

    held = trust.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=NAME)
    worker = threading.Thread(target=load)
    worker.start()
    try:
        renewed = run_gateway_command(gw.directory, "cert", "acme", "renew", "--force")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert "installed" in renewed.stdout
        deadline = time.monotonic() + 10
        while served_sha256(port, root, NAME) == first and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(30)
    second = served_sha256(port, root, NAME)
    assert second != first, "the renewed certificate must serve without a restart"
    assert failures == [] and done >= 5, (failures[:5], done)
    held.sendall(b"GET /api/v1/DocTypes HTTP/1.1\r\nHost: x\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 200")  # a connection opened before the swap continues
    held.close()
    assert len(list(acme_dir.glob("account-*.key"))) == 1 and account_key.read_bytes() == key_before
    assert '"uri"' in account_uri and account_uri.split('"uri"')[1][:80] in account_record.read_text()

    # The CA goes away: a clear error, the current certificate keeps serving.
    pebble.stop()
    gw.mark_log()
    failed = run_gateway_command(gw.directory, "cert", "acme", "renew", "--force")
    assert failed.returncode == 1
    assert "cannot reach the ACME directory" in failed.stderr and "next attempt" in failed.stderr
    assert served_sha256(port, root, NAME) == second
    status = run_gateway_command(gw.directory, "cert", "acme", "status")
    assert "cannot reach the ACME directory" in status.stdout
    assert gw.process.poll() is None


def test_tls_alpn_01_on_the_base_port_and_renewal_by_the_running_gateway(standin: Standin, tmp_path: Path,
                                      gateway_factory: Callable[..., RunningGateway]) -> None:
    base_port = free_port()
    # Nothing listens on pebble's HTTP-01 port: only the TLS-ALPN-01 answer on the base's own
    # port (acme.tls_alpn_port, 443 in production) can succeed.
    # Certificates living 8 s: the gateway itself renews them at half their life, no restart.
    server = pebble_server.start_pebble(tmp_path / "pebble", http_port=free_port(), tls_port=base_port,
                                        validity_seconds=8)
    try:
        entry = base_entry(standin, "b1", tls={"acme": [NAME]})
        entry["data"]["listen"] = base_port
        config = gateway_config(tmp_path, standin, bases=[entry],
                                acme={**acme_section(server), "challenge_listen": free_port(),
                                      "tls_alpn_port": base_port})
        gw = gateway_factory(config)
        root = tmp_path / "root.pem"
        root.write_bytes(server.root_pem())
        first = wait_for_issued(gw, base_port, root, NAME)
        gw.wait_for_log(r"(?s)installed.*installed", 20)
        deadline = time.monotonic() + 5
        while served_sha256(base_port, root, NAME) == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served_sha256(base_port, root, NAME) != first
        # An ordinary client offering acme-tls/1 among others still gets the real certificate.
        ctx = ssl.create_default_context(cafile=str(root))
        ctx.set_alpn_protocols(["h2", "acme-tls/1", "http/1.1"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", base_port), timeout=10),
                             server_hostname=NAME) as tls:
            assert tls.selected_alpn_protocol() in ("h2", "http/1.1")
    finally:
        server.stop()


def test_challenge_port_taken_is_named(tmp_path: Path) -> None:
    """The gateway refuses the configuration (and so does not start), naming the key and the port;
    `gateway cert acme renew` without a running gateway says the same."""
    from addons.autocert import AutoCert
    from gateway.config import load_config
    from tests.harness import _write_yaml

    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]
        config = {"state_dir": "./state", "listen_host": "127.0.0.1", "admin": {"enabled": False},
                  "acme": {"enabled": True, "directory": f"https://127.0.0.1:{free_port()}/dir",
                           "challenge_listen": taken},
                  "bases": [{"id": "b1", "name": "B", "tls": {"acme": [NAME]},
                             "data": {"listen": free_port(), "backend": "http://127.0.0.1:9"}}]}
        _write_yaml(tmp_path / "gateway.yaml", config)
        addon = AutoCert()
        with pytest.raises(OSError) as info:
            addon.apply_config(load_config(tmp_path / "gateway.yaml"))
        assert f"acme.challenge_listen: cannot listen on 127.0.0.1:{taken}" in str(info.value)
        addon.done()
        done = run_gateway_command(tmp_path, "cert", "acme", "renew")
        assert done.returncode == 1
        assert f"acme.challenge_listen: port {taken} on 127.0.0.1 is taken by another program" in done.stderr
