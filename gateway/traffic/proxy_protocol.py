"""PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy sends them in front of a connection.

https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt. Only the header is read — never
a byte more — so what follows (the TLS ClientHello) is left in the stream for the proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_LENGTH = 107  # the spec's bound for the whole line, CRLF included
V2_MAX_PAYLOAD = 4096  # addresses (≤ 216 bytes) plus TLVs; anything bigger is not a balancer
HEADER_TIMEOUT = 5.0


class ProxyHeaderError(Exception):
    """The connection did not start with a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int
    local: bool  # LOCAL (v2) or UNKNOWN (v1): the balancer speaking for itself, e.g. a health check
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


async def read_header(reader: asyncio.StreamReader) -> ProxyHeader:
    """Reads exactly one header from ``reader``; raises ProxyHeaderError if there is none."""
    try:
        start = await reader.readexactly(5)
        if start == b"PROXY":
            line = start + await _read_line(reader)
            return parse_v1(line)
        if start == V2_SIGNATURE[:5]:
            head = start + await reader.readexactly(11)
            length = struct.unpack("!H", head[14:16])[0]
            if head[:12] != V2_SIGNATURE:
                raise ProxyHeaderError("malformed v2 signature")
            if length > V2_MAX_PAYLOAD:
                raise ProxyHeaderError(f"v2 header announces {length} bytes, more than a balancer sends")
            return parse_v2(head + await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise ProxyHeaderError("connection closed inside the PROXY header") from None
    raise ProxyHeaderError("no PROXY protocol header (the connection starts with something else)")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = await reader.readexactly(1)
        line += chunk
        if len(line) + 5 > V1_MAX_LENGTH:
            raise ProxyHeaderError(f"v1 header longer than {V1_MAX_LENGTH} bytes")
    return line


def parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    if not text.endswith("\r\n") or len(line) > V1_MAX_LENGTH:
        raise ProxyHeaderError("v1 header not ended by CRLF within 107 bytes")
    parts = text[:-2].split(" ")
    if len(parts) >= 2 and parts[0] == "PROXY" and parts[1] == "UNKNOWN":
        return ProxyHeader(1, local=True)
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed v1 header")
    version = 4 if parts[1] == "TCP4" else 6
    source = (_address(parts[2], version), _port(parts[4]))
    destination = (_address(parts[3], version), _port(parts[5]))
    return ProxyHeader(1, local=False, source=source, destination=destination)


def parse_v2(data: bytes) -> ProxyHeader:
    if len(data) < 16 or data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("malformed v2 signature")
    version, command = data[12] >> 4, data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    length = struct.unpack("!H", data[14:16])[0]
    payload = data[16:16 + length]
    if version != 2 or len(payload) != length:
        raise ProxyHeaderError("malformed v2 header (version or length)")
    if command == 0x0:
        return ProxyHeader(2, local=True)
    if command != 0x1:
        raise ProxyHeaderError(f"unknown v2 command {command}")
    if transport != 0x1 or family not in (0x1, 0x2):
        # UDP, UNIX sockets or UNSPEC under a PROXY command: no client IP address to use.
        raise ProxyHeaderError(f"v2 header without a TCP client address (family {family}, transport {transport})")
    size = 4 if family == 0x1 else 16
    if length < 2 * size + 4:
        raise ProxyHeaderError("v2 header too short for its addresses")
    src = str(ipaddress.ip_address(payload[:size]))
    dst = str(ipaddress.ip_address(payload[size:2 * size]))
    sport, dport = struct.unpack("!HH", payload[2 * size:2 * size + 4])
    return ProxyHeader(2, local=False, source=(src, sport), destination=(dst, dport))


def _address(text: str, version: int) -> str:
    if "%" in text:
        # Python reads "fe80::1%a" as an address with a zone; a zone names an interface of the
        # balancer's machine, never a client, and would reach X-Forwarded-For as written.
        raise ProxyHeaderError(f"v1 header address {text[:40]!r} carries a zone id")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"v1 header address {text[:40]!r} is not an IP address") from None
    if ip.version != version:
        raise ProxyHeaderError("v1 header address family does not match TCP4/TCP6")
    return str(ip)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyHeaderError(f"v1 header port {text[:10]!r} is not a port")
    return int(text)


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header (for tests and tools)."""
    proto = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """A v2 header; ``source`` None makes a LOCAL command (for tests and tools)."""
    if source is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    destination = destination or ("0.0.0.0" if ":" not in source[0] else "::", 0)
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x11 if src.version == 4 else 0x21
    payload = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload
