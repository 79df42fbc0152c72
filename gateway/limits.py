"""Limits and timeouts against hostile clients: the ``limits:`` section and the pure checks.

Names follow nginx where nginx has the setting (``client_header_timeout``, ``send_timeout``,
``client_max_body_size`` ...), so an administrator who knows nginx finds them; the "Limits and timeouts"
table of docs/guides/policies-limits.md lists each with its default and its nginx equivalent.

The checks here are pure functions over bytes and strings; the mitmproxy side lives in
addons/_engine_patches.py (what must happen while a request head is still being read) and in
addons/limits.py and addons/hygiene.py (per connection and per request).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("gateway.limits")

# RFC 9110 §9 methods, PATCH (RFC 5789, which OData v4 updates with) and MERGE (OData v1–v3).
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "MERGE")

# Request headers that change what a request means to some back end, or claim a client address
# the gateway did not see. Forwarded and X-Real-IP are then set by the gateway (addons/hygiene.py).
DEFAULT_STRIP_HEADERS = (
    "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",   # OData/.NET method tunnelling
    "X-Original-URL", "X-Rewrite-URL",                                  # IIS URL Rewrite routing
    "Forwarded", "X-Real-IP", "True-Client-IP", "X-Client-IP", "CF-Connecting-IP",
    "X-Cluster-Client-IP", "Client-IP", "X-Forwarded-Port", "X-Forwarded-Server",
)

MAX_SAFE_CONTENT_LENGTH = 2**53  # JavaScript's and many parsers' exact-integer limit


@dataclass(frozen=True)
class LimitSettings:
    # --- sizes (nginx: large_client_header_buffers, client_max_body_size) ---
    client_header_max_size: int = 32 * 1024       # request line + headers, bytes → 431 / 414
    request_line_max_size: int = 8 * 1024         # the request line (method, target, version) → 414
    max_headers: int = 100                        # header fields per request → 431
    client_max_body_size: int = 0                 # bytes, 0 = no limit (a base may set its own) → 413
    # --- connections (nginx: limit_conn, worker_connections) ---
    max_connections_per_ip: int = 256
    max_connections: int = 10000
    # --- timeouts, seconds (nginx names) ---
    tls_handshake_timeout: float = 10.0           # ssl_handshake_timeout
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    send_timeout: float = 60.0
    # --- memory per connection ---
    response_buffer: int = 256 * 1024             # a larger answer is streamed (proxy_buffers)
    # --- HTTP/2 (nginx: http2_max_concurrent_streams; reset flood: CVE-2023-44487) ---
    http2_max_concurrent_streams: int = 100
    http2_max_resets: int = 100                   # client RST_STREAMs per 10 s before GOAWAY
    # --- what may reach the back end ---
    methods: tuple[str, ...] = DEFAULT_METHODS
    header_hygiene: bool = True
    strip_headers: tuple[str, ...] = DEFAULT_STRIP_HEADERS


RESET_WINDOW = 10.0


def parse_limits(reader: Any, parse_size: Any) -> LimitSettings:
    """Read the ``limits:`` section through gateway.config's _Reader (errors name the key)."""
    defaults = LimitSettings()

    def size(name: str, minimum: int = 1) -> int:
        raw = reader.get(name, (str, int), getattr(defaults, name))
        try:
            value = parse_size(raw)
        except ValueError as e:
            raise reader.fail(name, str(e)) from None
        if value < minimum:
            raise reader.fail(name, f"must be at least {minimum}, got {raw!r}")
        return value

    def count(name: str, minimum: int = 1) -> int:
        value = reader.get(name, int, getattr(defaults, name))
        if value < minimum:
            raise reader.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def seconds(name: str) -> float:
        value = reader.get(name, float, getattr(defaults, name))
        if value <= 0:
            raise reader.fail(name, f"must be a number of seconds greater than 0, got {value}")
        return value

    def names(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        items = reader.get(name, list, list(default))
        for i, item in enumerate(items):
            if not isinstance(item, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", item):
                raise reader.fail(f"{name}[{i}]", f"{item!r} is not a header or method name")
        return tuple(items)

    methods = names("methods", DEFAULT_METHODS)
    for i, method in enumerate(methods):
        if method != method.upper():
            raise reader.fail(f"methods[{i}]", f"{method!r}: methods are upper-case; write {method.upper()!r}")
    settings = LimitSettings(
        client_header_max_size=size("client_header_max_size", 1024),
        request_line_max_size=size("request_line_max_size", 256),
        max_headers=count("max_headers"),
        client_max_body_size=size("client_max_body_size", 0),
        max_connections_per_ip=count("max_connections_per_ip", 0),
        max_connections=count("max_connections", 0),
        tls_handshake_timeout=seconds("tls_handshake_timeout"),
        client_header_timeout=seconds("client_header_timeout"),
        client_body_timeout=seconds("client_body_timeout"),
        keepalive_timeout=seconds("keepalive_timeout"),
        send_timeout=seconds("send_timeout"),
        response_buffer=size("response_buffer", 4096),
        http2_max_concurrent_streams=count("http2_max_concurrent_streams"),
        http2_max_resets=count("http2_max_resets"),
        methods=methods,
        header_hygiene=reader.get("header_hygiene", bool, True),
        strip_headers=names("strip_headers", DEFAULT_STRIP_HEADERS),
    )
    if settings.request_line_max_size > settings.client_header_max_size:
        raise reader.fail("request_line_max_size", "cannot be larger than client_header_max_size")
    return settings


# --- the file-descriptor limit -------------------------------------------------------------


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft, hard) after, None where unsupported.

    Every client connection is a file descriptor; the usual soft limit of 1024 is reached by a
    modest idle flood, after which every accept fails. The hard limit is what the administrator
    (systemd's LimitNOFILE) allows; raising the soft limit to it needs no privilege.
    """
    try:
        import resource  # POSIX only: Windows has no such limit to raise
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            logger.warning("could not raise the open-files limit from %d to %d: %s", soft, target, e)
    return soft, hard


# --- the raw HTTP/1 request head ------------------------------------------------------------


class HeadRefused(Exception):
    """The request head cannot be forwarded; status and a one-line reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


# Any control character but HTAB (which header values may hold); DEL too. A bare CR is the
# dangerous one: some parsers end a line there and read a second header the gateway never saw.
_BAD_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")


def check_request_head(lines: list[bytes], limits: LimitSettings) -> int | None:
    """Refuse an HTTP/1 request head (lines without their CRLF) that a lax parser might read
    differently from the gateway; return its Content-Length (None without one). Raises HeadRefused."""
    if len(lines) - 1 > limits.max_headers:
        raise HeadRefused(431, f"more than {limits.max_headers} header fields")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HeadRefused(400, "malformed request line")
    method, target, version = parts
    if _BAD_IN_VALUE.search(request_line):
        raise HeadRefused(400, "control character in the request line")
    if not _VERSION.fullmatch(version):
        if re.fullmatch(rb"HTTP/\d(\.\d)?", version):
            raise HeadRefused(505, f"HTTP version {version.decode('ascii')} is not supported; use HTTP/1.1")
        raise HeadRefused(400, "malformed HTTP version")
    if not _TOKEN.fullmatch(method):
        raise HeadRefused(400, "malformed method")
    problem = check_method(method.decode("ascii"), limits.methods)
    if problem is not None:
        raise HeadRefused(*problem)
    if method == b"CONNECT":
        raise HeadRefused(501, "CONNECT is not supported by this gateway")
    lengths: list[str] = []
    transfer_encoding = False
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HeadRefused(400, "obsolete line folding (a header line starting with a space) is not accepted")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HeadRefused(400, "malformed header field name")
        if _BAD_IN_VALUE.search(value):
            raise HeadRefused(400, f"control character (CR, LF or NUL) in header {name.decode('ascii')!r}")
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value.decode("latin-1"))
        elif lower == b"transfer-encoding":
            transfer_encoding = True
    reason = check_content_length(lengths)
    if reason is not None:
        raise HeadRefused(400, reason)
    if lengths and transfer_encoding:
        raise HeadRefused(400, "both Content-Length and Transfer-Encoding (a request smuggling pattern)")
    return int(lengths[0].strip()) if lengths else None


def check_method(method: str, allowed: tuple[str, ...]) -> tuple[int, str] | None:
    """(status, reason) for a method the gateway does not forward, else None."""
    if method != method.upper():
        return 400, f"method {method!r} must be upper-case"
    if method not in allowed:
        return 501, f"method {method} is not supported by this gateway"
    return None


def check_content_length(values: list[str]) -> str | None:
    """A reason to refuse, or None: one plain decimal below 2^53 (repeats must agree)."""
    if not values:
        return None
    distinct = {v.strip() for v in values}
    if len(distinct) != 1:
        return "conflicting Content-Length headers"
    value = distinct.pop()
    if not value.isascii() or not value.isdigit() or len(value) > 16 or int(value) >= MAX_SAFE_CONTENT_LENGTH:
        return "Content-Length is not a plain decimal number below 2^53"
    return None


def control_character_in(fields: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The name of the first header whose name or value holds a control character, else None."""
    for name, value in fields:
        if _BAD_IN_VALUE.search(value) or not _TOKEN.fullmatch(name):
            return name
    return None


def identity_lookalike(name: str, prefix: str) -> bool:
    """True if a header name, read with '_' as '-' (as CGI-style servers do), carries the prefix."""
    return name.replace("_", "-").lower().startswith(prefix.lower())
