"""PROXY protocol v1 and v2 on the base ports: the header's address is the client, over real TLS.

Parser checks run in-process; everything else against one real gateway process, with raw
sockets sending the header by hand (the HAProxy end-to-end test is in test_several_machines.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Callable

import pytest

from gateway.config import ConfigError, parse_config
from gateway.traffic.proxy_protocol import ProxyHeaderError, encode_v1, encode_v2, parse_v1, parse_v2, read_header
from tests.harness import RunningGateway, Standin, base_entry, gateway_config

Factory = Callable[..., RunningGateway]


def test_headers_parse_and_bad_ones_are_refused() -> None:
    v1 = parse_v1(encode_v1(("203.0.113.7", 51000), ("10.0.0.1", 443)))
    assert v1.source == ("203.0.113.7", 51000) and not v1.local
    v2 = parse_v2(encode_v2(("2001:db8::7", 51000), ("2001:db8::1", 443)))
    assert v2.source == ("2001:db8::7", 51000) and v2.version == 2
    assert parse_v2(encode_v2(None)).local
    assert parse_v1(b"PROXY UNKNOWN\r\n").local
    for bad in (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
                b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
                b"PROXY TCP6 fe80::1%a ::1 40000 443\r\n", b'PROXY TCP6 ::1 fe80::1%"x" 40000 443\r\n'):
        with pytest.raises(ProxyHeaderError):
            parse_v1(bad)

    async def read(data: bytes) -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        header = await read_header(reader)
        return header, await reader.read()

    header, rest = asyncio.run(read(encode_v2(("198.51.100.9", 4000)) + b"\x16\x03\x01hello"))
    assert header.source == ("198.51.100.9", 4000) and rest == b"\x16\x03\x01hello"  # not a byte more
    header, rest = asyncio.run(read(encode_v1(("198.51.100.9", 4000), ("127.0.0.1", 1)) + b"GET"))
    assert header.source == ("198.51.100.9", 4000) and rest == b"GET"
    for bad in (b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.1\r\n\r\n", b"PROXY " + b"x" * 200,
                b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"):
        with pytest.raises(ProxyHeaderError):
            asyncio.run(read(bad))


def test_config_names_a_bad_trusted_entry_and_refuses_enabled_without_trusted(tmp_path: Path) -> None:
    base = {"id": "b1", "name": "B", "data": {"listen": 9001, "backend": "http://127.0.0.1:9706",
                                              "proxy_protocol": {"enabled": False}}}
    cfg = parse_config({"bases": [base], "proxy_protocol": {"enabled": True, "trusted": ["10.0.0.5", "10.0.1.0/24"]}},
                       tmp_path / "gateway.yaml")
    assert cfg.proxy_protocol.trusts("10.0.1.77") and not cfg.proxy_protocol.trusts("10.0.2.1")
    assert cfg.bases[0].data.proxy_protocol is not None and not cfg.bases[0].data.proxy_protocol.enabled
    with pytest.raises(ConfigError, match=r"proxy_protocol\.trusted\[1\].*not an address"):
        parse_config({"bases": [], "proxy_protocol": {"enabled": True, "trusted": ["10.0.0.5", "balancer"]}},
                     tmp_path / "gateway.yaml")
    with pytest.raises(ConfigError, match=r"proxy_protocol\.trusted: is empty"):
        parse_config({"bases": [], "proxy_protocol": {"enabled": True}}, tmp_path / "gateway.yaml")
    with pytest.raises(ConfigError, match=r"workers: 'many'"):
        parse_config({"bases": [], "workers": "many"}, tmp_path / "gateway.yaml")


def _request(gw: RunningGateway, header: bytes, source: str = "127.0.0.1", path: str = "/echo") -> bytes:
    """Header, then TLS, then one GET; returns the raw answer (b'' when the gateway closed)."""
    raw = socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=10, source_address=(source, 0))
    try:
        raw.sendall(header)
        context = ssl.create_default_context(cafile=gw.ca_file)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data
    except (ssl.SSLError, ConnectionError, OSError):
        return b""
    finally:
        raw.close()


def _closed_without_a_byte(gw: RunningGateway, payload: bytes, source: str = "127.0.0.1", wait: float = 10) -> bool:
    with socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=wait, source_address=(source, 0)) as s:
        if payload:
            s.sendall(payload)
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def pp_gateway(standin: Standin, tmp_path: Path, gateway_factory: Factory) -> RunningGateway:
    base = base_entry(standin, "b1", "Склад")
    (tmp_path / "gw" / "bases" / "b1" / "Server").mkdir(parents=True)
    (tmp_path / "gw" / "bases" / "b1" / "Server" / "blacklist.dat").write_text("203.0.113.66\n", encoding="utf-8")
    config = gateway_config(tmp_path, standin, bases=[base],
                            proxy_protocol={"enabled": True, "trusted": ["127.0.0.1"]})
    return gateway_factory(config, directory=tmp_path / "gw")


def test_the_headers_address_is_the_client_for_lists_forwarding_and_logs(pp_gateway: RunningGateway) -> None:
    gw = pp_gateway
    for header in (encode_v1(("198.51.100.23", 40000), ("127.0.0.1", gw.port("b1"))),
                   encode_v2(("198.51.100.23", 40000), ("127.0.0.1", gw.port("b1")))):
        answer = _request(gw, header)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        echoed = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        headers = {k.lower(): v for k, v in echoed["headers"].items()}
        assert headers["x-forwarded-for"] == "198.51.100.23"
    gw.wait_for_log(r"198\.51\.100\.23 .*GET /echo 200")

    # The blacklist applies to the address in the header, before any TLS.
    gw.mark_log()
    assert _request(gw, encode_v2(("203.0.113.66", 40000))) == b""
    gw.wait_for_log(r"refused 203\.0\.113\.66 on base 'Склад'")

    # LOCAL (a balancer's health check) is served with the balancer's own address.
    answer = _request(gw, encode_v2(None))
    assert answer.startswith(b"HTTP/1.1 200")


def test_untrusted_missing_malformed_and_silent_connections_are_closed(pp_gateway: RunningGateway) -> None:
    gw = pp_gateway
    gw.mark_log()
    # From an address not in `trusted`, even with a well-formed header: never served.
    assert _request(gw, encode_v2(("198.51.100.23", 40000)), source="127.0.0.3") == b""
    gw.wait_for_log(r"closed a connection from 127\.0\.0\.3 .*not a trusted balancer")
    # Straight TLS with no header: closed, never served with the balancer's address.
    assert _request(gw, b"") == b""
    gw.wait_for_log(r"closed a connection from 127\.0\.0\.1 .*no PROXY protocol header")
    assert _closed_without_a_byte(gw, b"PROXY TCP4 1.2.3.4 nonsense\r\n")
    gw.wait_for_log(r"malformed v1 header")
    # An IPv6 zone id (issue 24 point 9) is no client address: closed, never forwarded.
    gw.mark_log()
    assert _request(gw, b'PROXY TCP6 fe80::1%"a" ::1 40000 443\r\n', path="/echo") == b""
    gw.wait_for_log(r"carries a zone id")
    started = time.monotonic()
    assert _closed_without_a_byte(gw, b"", wait=15)
    assert 4 <= time.monotonic() - started < 12
    gw.wait_for_log(r"no PROXY protocol header within 5 s")
    assert "198.51.100.23" not in gw.log()
