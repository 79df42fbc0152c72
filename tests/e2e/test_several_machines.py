"""Several machines: a real HAProxy (send-proxy-v2, /healthz checks) in front of two gateways
sharing a real Redis, all on loopback. Client addresses are 127.0.0.x sources, carried to the
gateways by the PROXY protocol.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import h2.config
import h2.connection
import httpx
import pytest

from gateway.store import keys
from tests.harness import REPO, RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config
from tests.redis_server import RedisServer

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (scripts/system-deps.sh)")

Factory = Callable[..., RunningGateway]
PASSWORD, WRONG = "Sklad2024x", "Wrong12345"
BLACKLISTED = "127.0.0.5"


def test_the_shipped_haproxy_cfg_is_valid() -> None:
    done = subprocess.run([HAPROXY, "-c", "-f", str(REPO / "deploy" / "haproxy.cfg")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    assert "send-proxy-v2" in text and "GET /healthz" in text



def haproxy_config(port: int, gateways: list[RunningGateway]) -> str:
    servers = "\n".join(
        f"    server gw{i} 127.0.0.1:{gw.port('b1')} send-proxy-v2 check port {gw.config['admin']['listen']} "
        "inter 500ms fall 2 rise 1" for i, gw in enumerate(gateways, 1))
    return f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend base
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""


@pytest.fixture
def balancer(tmp_path: Path, standin: Standin, redis_server: RedisServer,
             gateway_factory: Factory) -> Iterator[tuple[int, list[RunningGateway]]]:
    gateways = []
    for name in ("a", "b"):
        directory = tmp_path / name
        (directory / "bases" / "b1" / "Server").mkdir(parents=True)
        (directory / "bases" / "b1" / "Server" / "blacklist.dat").write_text(BLACKLISTED + "\n", encoding="utf-8")
        if gateways:  # the second machine gets the first one's key file, as the Redis section says
            (directory / "state").mkdir()
            shutil.copyfile(gateways[0].state_dir / keys.SECRET_FILE, directory / "state" / keys.SECRET_FILE)
        config = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                                store={"backend": "redis", "redis_url": redis_server.url},
                                admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()},
                                proxy_protocol={"enabled": True, "trusted": ["127.0.0.1"]})
        gateways.append(gateway_factory(config, directory=directory))
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, gateways), encoding="utf-8")
    process = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.1)
        time.sleep(1.0)  # first health checks
        yield port, gateways
    finally:
        process.terminate()
        process.wait(10)


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"Иванов:{secret}".encode()).decode()}


def through(port: int, gateways: list[RunningGateway], source: str, secret: str) -> int:
    """One request on a new connection through the balancer; 0 when the connection was refused."""
    context = ssl.create_default_context()
    for gw in gateways:
        context.load_verify_locations(gw.ca_file)
    transport = httpx.HTTPTransport(local_address=source, verify=context)
    try:
        with httpx.Client(transport=transport, timeout=10) as client:
            return client.get(f"https://127.0.0.1:{port}/echo", headers=basic(secret)).status_code
    except httpx.HTTPError:
        return 0


def test_two_gateways_behind_haproxy_share_lists_and_lockouts(balancer: tuple[int, list[RunningGateway]]) -> None:
    port, (a, b) = balancer
    cli_ok(a.directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(a.directory, "user", "add", "Иванов", "--group", "Операторы", "--password-stdin",
           input=PASSWORD + "\n", secrets=(PASSWORD,))

    # Round robin: four requests land two on each gateway, each seeing the real source address.
    assert [through(port, [a, b], "127.0.0.4", PASSWORD) for _ in range(4)] == [200] * 4
    for gw in (a, b):
        gw.wait_for_log(r"127\.0\.0\.4 .*GET /echo 200")

    # A blacklisted client address is refused by both gateways, before TLS.
    assert [through(port, [a, b], BLACKLISTED, PASSWORD) for _ in range(4)] == [0] * 4
    for gw in (a, b):
        gw.wait_for_log(rf"refused {BLACKLISTED.replace('.', r'\.')} on base 'Склад'")

    # 10 failed logins spread over both lock the address out on both.
    assert [through(port, [a, b], "127.0.0.2", WRONG) for _ in range(10)] == [401] * 10
    assert a.log().count("127.0.0.2") >= 5 and b.log().count("127.0.0.2") >= 5
    assert [through(port, [a, b], "127.0.0.2", PASSWORD) for _ in range(4)] == [429] * 4
    assert through(port, [a, b], "127.0.0.3", PASSWORD) == 200

    # A client reaching a gateway's port directly, from an address not trusted as a balancer.
    a.mark_log()
    with socket.create_connection(("127.0.0.1", a.port("b1")), timeout=10, source_address=("127.0.0.3", 0)) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass  # closed with the bytes unread: a reset, just as final
    a.wait_for_log(r"closed a connection from 127\.0\.0\.3 .*not a trusted balancer")
    # From the trusted balancer's address, a v1 header whose address has a zone id (issue 24 point 9).
    b.mark_log()
    with socket.create_connection(("127.0.0.1", b.port("b1")), timeout=10) as s:
        s.sendall(b"PROXY TCP6 fe80::1%a ::1 40000 443\r\n")
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    b.wait_for_log(r"carries a zone id")
    assert WRONG not in a.log() + b.log() and PASSWORD not in a.log() + b.log()

    # HTTP/2 resets through the balancer (issue 24 point 5): 6 connections of 99 resets, three on
    # each gateway, counted on the client's address (PROXY protocol) over both: refused by both.
    for _ in range(6):
        assert reset_through(port, [a, b], "127.0.0.9", 99)
    deadline = time.monotonic() + 5
    while any(reset_through(port, [a, b], "127.0.0.9", 1) for _ in range(4)):
        assert time.monotonic() < deadline, "a gateway still serves the address"
        time.sleep(0.3)
    assert through(port, [a, b], "127.0.0.3", PASSWORD) == 200  # others, through the same balancer, are not


def reset_through(port: int, gateways: list[RunningGateway], source: str, pairs: int) -> bool:
    """One HTTP/2 connection through the balancer sending ``pairs`` HEADERS + RST_STREAM; False if refused."""
    context = ssl.create_default_context()
    for gw in gateways:
        context.load_verify_locations(gw.ca_file)
    context.set_alpn_protocols(["h2"])
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError):
        return False
    with tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for _ in range(pairs):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":path", "/echo"), (":scheme", "https"), (":authority", "x")])
            conn.reset_stream(sid)
        try:
            tls.sendall(conn.data_to_send())
            tls.settimeout(0.3)  # the gateway reads what was sent before it sees the close
            while tls.recv(65536):
                pass
        except (OSError, ssl.SSLError):
            pass
    return True
