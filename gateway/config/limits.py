"""The ``limits:`` section: sizes, connection counts, timeouts and what may reach the back end.

Names follow nginx where nginx has the setting (``client_header_timeout``, ``send_timeout``,
``client_max_body_size`` ...), so an administrator who knows nginx finds them; the README's
"Limits and timeouts" table lists each with its default and its nginx equivalent. The checks
that apply them are gateway/traffic/limits.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config.reader import _Reader, parse_size

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


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*r/(s|m)\s*$")


@dataclass(frozen=True)
class RequestRate:
    """nginx's limit_req: ``rate`` requests per second on average, ``burst`` more at once."""

    rate: float
    burst: int = 0

    @property
    def text(self) -> str:
        per_minute = self.rate * 60
        return f"{per_minute:g}r/m" if self.rate < 1 else f"{self.rate:g}r/s"


def parse_rate(reader: _Reader, name: str, value: object) -> float:
    """'10r/s' or '600r/m' (nginx's spelling) → requests per second."""
    match = _RATE.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise reader.fail(name, f"is {value!r}; write a rate as nginx does, e.g. 10r/s or 600r/m")
    return float(match.group(1)) / (60.0 if match.group(2) == "m" else 1.0)


def parse_request_rate(reader: _Reader, rate_name: str = "rate", burst_name: str = "burst") -> RequestRate | None:
    raw = reader.get(rate_name, str, None)
    burst = reader.get(burst_name, int, 0)
    if burst < 0:
        raise reader.fail(burst_name, f"must be 0 or more, got {burst}")
    if raw is None:
        if burst_name in reader.data and reader.data[burst_name] is not None:
            raise reader.fail(burst_name, f"needs {rate_name} beside it (e.g. {rate_name}: 10r/s)")
        return None
    return RequestRate(parse_rate(reader, rate_name, raw), burst)


@dataclass(frozen=True)
class LimitSettings:
    # --- sizes (nginx: large_client_header_buffers, client_max_body_size) ---
    client_header_max_size: int = 32 * 1024       # request line + headers, bytes → 431 / 414
    request_line_max_size: int = 8 * 1024         # the request line (method, target, version) → 414
    max_headers: int = 100                        # header fields per request → 431
    # Scanned documents and phone photos, a few at a time, stay far below it; a larger upload is
    # almost always a mistake or an attack (a base that takes bigger files sets its own; 0 = none).
    client_max_body_size: int = 100 * 1024 * 1024  # bytes, 0 = no limit (a base may set its own) → 413
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
    # --- request bodies held in memory until complete (nginx: client_body_buffer_size) ---
    request_buffer: int = 32 * 1024 * 1024        # all bodies of a worker; past it a body is streamed
    request_buffer_per_ip: int = 8 * 1024 * 1024  # all bodies from one address; past it: streamed
    # --- HTTP/2 (nginx: http2_max_concurrent_streams; reset flood: CVE-2023-44487) ---
    http2_max_concurrent_streams: int = 100
    http2_max_resets: int = 100                   # client RST_STREAMs per 10 s before GOAWAY
    # --- what may reach the back end ---
    methods: tuple[str, ...] = DEFAULT_METHODS
    header_hygiene: bool = True
    strip_headers: tuple[str, ...] = DEFAULT_STRIP_HEADERS
    # --- request rate per client address and base (nginx: limit_req rate=… burst=… nodelay) → 429 ---
    request_rate: RequestRate | None = None


def parse_limits(reader: _Reader) -> LimitSettings:
    """Read the ``limits:`` section (errors name the key)."""
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
        request_buffer=size("request_buffer", 65536),
        request_buffer_per_ip=size("request_buffer_per_ip", 65536),
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
        request_rate=parse_request_rate(reader),
    )
    if settings.request_buffer_per_ip > settings.request_buffer:
        raise reader.fail("request_buffer_per_ip", "cannot be larger than request_buffer (the whole worker's budget)")
    if settings.request_line_max_size > settings.client_header_max_size:
        raise reader.fail("request_line_max_size", "cannot be larger than client_header_max_size")
    return settings
