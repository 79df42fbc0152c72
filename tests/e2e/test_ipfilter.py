"""The IpFilter addon: unit tests of its hook, then real TCP/TLS clients from different loopback
source addresses against a running gateway."""

from __future__ import annotations

import codecs
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from mitmproxy.test import tflow

import addons._context as context
import addons.ipfilter as ipfilter
from gateway.config import GatewayConfig, parse_config
from tests.harness import RunningGateway, Standin, base_entry, gateway_config, start_gateway

Factory = Callable[..., RunningGateway]


# --- the hook, called directly ----------------------------------------------------------------

@pytest.fixture
def restore_globals() -> Iterator[None]:
    saved = context._current, ipfilter._active
    yield
    context._current, ipfilter._active = saved


def unit_config(tmp_path: Path) -> GatewayConfig:
    server = tmp_path / "b1" / "Server"
    server.mkdir(parents=True)
    (server / "blacklist.dat").write_text("# bad actors\n10.0.0.3\n", encoding="utf-8")
    (server / "whitelist.dat").write_text("10.0.0.2\n", encoding="utf-8")
    data = {"admin": {"enabled": False}, "bases": [
        {"id": "b1", "name": "Склад", "folder": "b1", "data": {"listen": 20021, "backend": "http://127.0.0.1:9706"}}]}
    cfg = parse_config(data, tmp_path / "gateway.yaml")
    context.set_current_config(cfg)
    return cfg


def client_from(host: str, port: int = 20021) -> Any:
    client = tflow.tclient_conn()
    client.peername = (host, 50000)
    client.sockname = ("127.0.0.1", port)
    client.error = None
    return client


def test_refused_client_gets_an_error_and_one_log_line(
        tmp_path: Path, restore_globals: None, caplog: pytest.LogCaptureFixture) -> None:
    addon = ipfilter.IpFilter()
    addon.apply_config(unit_config(tmp_path))
    client = client_from("10.0.0.3")
    with caplog.at_level(logging.INFO, logger="gateway.ipfilter"):
        addon.client_connected(client)
    assert client.error
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "ip-denied"]
    message = record.getMessage()
    assert "10.0.0.3" in message and "'Склад'" in message and "blacklist.dat:2" in message
    assert (record.base, record.client, record.line) == ("Склад", "10.0.0.3", 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("host", "refused"), [("10.0.0.2", False), ("10.0.0.4", False), ("::ffff:10.0.0.3", True)])
def test_decisions_through_the_hook(tmp_path: Path, restore_globals: None, host: str, refused: bool) -> None:
    addon = ipfilter.IpFilter()
    addon.apply_config(unit_config(tmp_path))
    client = client_from(host)
    addon.client_connected(client)
    assert bool(client.error) == refused


def test_port_no_longer_configured_is_refused(tmp_path: Path, restore_globals: None) -> None:
    addon = ipfilter.IpFilter()
    addon.apply_config(unit_config(tmp_path))
    client = client_from("10.0.0.4", port=1)
    addon.client_connected(client)
    assert client.error and "no longer served" in client.error


def test_a_crash_in_the_check_refuses(tmp_path: Path, restore_globals: None, monkeypatch: pytest.MonkeyPatch) -> None:
    addon = ipfilter.IpFilter()
    addon.apply_config(unit_config(tmp_path))

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(addon.lists, "decide", broken)
    client = client_from("10.0.0.4")
    addon.client_connected(client)
    assert client.error


def test_is_whitelisted_and_list_sizes_for_other_addons(tmp_path: Path, restore_globals: None) -> None:
    ipfilter._active = None
    assert not ipfilter.is_whitelisted(client_from("10.0.0.2")) and ipfilter.list_sizes() == {}
    addon = ipfilter.IpFilter()
    addon.apply_config(unit_config(tmp_path))
    assert ipfilter.is_whitelisted(client_from("10.0.0.2"))
    assert not ipfilter.is_whitelisted(client_from("10.0.0.3"))
    assert not ipfilter.is_whitelisted(client_from("10.0.0.2", port=1))
    assert ipfilter.list_sizes() == {str(tmp_path / "b1" / "Server" / "whitelist.dat"): 1,
                                     str(tmp_path / "b1" / "Server" / "blacklist.dat"): 1}


# --- real clients against a running gateway ---------------------------------------------------

def tls_probe(source: str, host: str, port: int) -> bytes:
    """Connect from ``source``, send a TLS ClientHello, return what the server sends back
    (b"" when the connection is closed without a word — no ServerHello)."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect((host, port))
        context_ = ssl.create_default_context()
        context_.check_hostname = False
        context_.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context_.wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        received = b""
        try:
            sock.sendall(outgoing.read())
            while len(received) < 5:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        return received


def https_get(gw: RunningGateway, source: str, base_id: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    with httpx.Client(transport=transport, timeout=15) as http:
        return http.get(gw.url(base_id, path="/echo/ip"))


def refused(gw: RunningGateway, source: str, base_id: str) -> bool:
    return tls_probe(source, "127.0.0.1", gw.port(base_id)) == b""


def write_list(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    boms = {"utf-8-sig": b"", "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8": b""}
    path.write_bytes(boms[encoding] + text.replace("\n", "\r\n").encode(encoding))


@pytest.fixture(scope="module")
def listed_gateway(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("ipfilter")
    b1 = directory / "bases" / "b1" / "Server"
    write_list(b1 / "whitelist.dat", "# Notepad, \"Unicode\"\n127.0.0.2\n127.0.0.4\n", "utf-16-le")
    write_list(b1 / "blacklist.dat", "; Notepad, UTF-8 with BOM\n127.0.0.3\n127.0.0.4\n"
               "127.0.1.10 - 127.0.1.20\n127.0.2.5/30\nthis line is bad\n", "utf-8-sig")
    write_list(directory / "bases" / "b2" / "Server" / "whitelist.dat", "127.0.0.7\n", "utf-16-be")
    write_list(directory / "global-white.dat", "127.0.0.6\n")
    bases = [base_entry(standin, "b1", "Склад 1"), base_entry(standin, "b2", "Office", whitelist_only=True)]
    config = gateway_config(directory, standin, bases=bases, ip_lists={"whitelist": ["global-white.dat"]})
    gw = start_gateway(directory, config)
    yield gw
    gw.stop()


@pytest.mark.parametrize(("source", "base_id", "allowed"), [
    ("127.0.0.2", "b1", True),    # whitelisted
    ("127.0.0.3", "b1", False),   # blacklisted
    ("127.0.0.4", "b1", True),    # on both: the whitelist has priority
    ("127.0.0.5", "b1", True),    # on neither
    ("127.0.0.6", "b1", True),    # global whitelist
    ("127.0.1.9", "b1", True),    # range edges: 127.0.1.10 - 127.0.1.20
    ("127.0.1.10", "b1", False),
    ("127.0.1.20", "b1", False),
    ("127.0.1.21", "b1", True),
    ("127.0.2.3", "b1", True),    # mask edges: 127.0.2.5/30 is 127.0.2.4 - 127.0.2.7
    ("127.0.2.4", "b1", False),
    ("127.0.2.7", "b1", False),
    ("127.0.2.8", "b1", True),
    ("127.0.0.7", "b2", True),    # whitelist-only base: its whitelist...
    ("127.0.0.6", "b2", True),    # ...or the global one
    ("127.0.0.5", "b2", False),   # nobody else
    ("127.0.0.2", "b2", False),
])
def test_connections_from_each_source_address(listed_gateway: RunningGateway, source: str, base_id: str,
                                              allowed: bool) -> None:
    if allowed:
        answer = https_get(listed_gateway, source, base_id)
        assert answer.status_code == 200
        assert answer.json()["headers"].get("X-Forwarded-For", answer.json()["headers"].get("x-forwarded-for")) == source
    else:
        assert refused(listed_gateway, source, base_id), "a refused client must get no ServerHello"
        with pytest.raises(httpx.TransportError):
            https_get(listed_gateway, source, base_id)


def test_refusal_log_line_names_address_base_file_and_line(listed_gateway: RunningGateway) -> None:
    listed_gateway.mark_log()
    assert refused(listed_gateway, "127.0.1.15", "b1")
    line = listed_gateway.wait_for_log(r".*refused 127\.0\.1\.15 .*")
    assert "'Склад 1'" in line and "blacklist.dat:4" in line


def test_bad_line_reported_at_start_with_file_and_number(listed_gateway: RunningGateway) -> None:
    assert "blacklist.dat:6: one entry per line" in listed_gateway.log()


def test_allowed_client_gets_a_server_hello(listed_gateway: RunningGateway) -> None:
    assert tls_probe("127.0.0.5", "127.0.0.1", listed_gateway.port("b1"))[:1] == b"\x16"  # handshake record


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout} s")


def test_edits_take_effect_within_2_s_without_restart(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    blacklist = directory / "bases" / "b1" / "Server" / "blacklist.dat"
    write_list(blacklist, "127.0.3.1\n")
    gw = gateway_factory(gateway_config(directory, standin, bases=[base_entry(standin, "b1")]), directory=directory)
    assert refused(gw, "127.0.3.1", "b1") and not refused(gw, "127.0.3.2", "b1")

    write_list(blacklist, "127.0.3.2\n", "utf-16-le")        # a refused address gets in, and the reverse
    wait_until(lambda: not refused(gw, "127.0.3.1", "b1") and refused(gw, "127.0.3.2", "b1"), 2.0)
    assert https_get(gw, "127.0.3.1", "b1").status_code == 200

    write_list(blacklist, "127.0.3.3\n", "utf-16-le")        # same size, written at once: still seen
    wait_until(lambda: refused(gw, "127.0.3.3", "b1"), 2.0)

    blacklist.unlink()                                       # deleted: an empty list, logged
    wait_until(lambda: not refused(gw, "127.0.3.3", "b1"), 2.0)
    gw.wait_for_log("was deleted: it is now an empty list")

    write_list(blacklist, "127.0.3.4\n")
    wait_until(lambda: refused(gw, "127.0.3.4", "b1"), 2.0)
    blacklist.write_bytes(codecs.BOM_UTF16_LE + b"1\x00" + b"\x00")  # unreadable: the last good one stays
    gw.wait_for_log(r"the previous version stays in force")
    assert refused(gw, "127.0.3.4", "b1")


def test_ipv6_loopback_and_its_lists(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    directory = tmp_path / "gw6"
    write_list(directory / "bases" / "b1" / "Server" / "blacklist.dat", "::1\n")
    write_list(directory / "bases" / "b2" / "Server" / "whitelist.dat", "::/127\n")
    write_list(directory / "bases" / "b3" / "Server" / "blacklist.dat", "::ffff:127.0.0.1\n2001:db8::/32\n")
    bases = [base_entry(standin, "b1"), base_entry(standin, "b2", whitelist_only=True), base_entry(standin, "b3")]
    gw = gateway_factory(gateway_config(directory, standin, bases=bases, listen_host="::1"), directory=directory)
    assert tls_probe("::1", "::1", gw.port("b1")) == b""
    assert tls_probe("::1", "::1", gw.port("b2"))[:1] == b"\x16"
    assert tls_probe("::1", "::1", gw.port("b3"))[:1] == b"\x16"
    gw.wait_for_log(r"refused ::1 on base 'Base b1' \(b1\): on the blacklist .*blacklist\.dat:1")
