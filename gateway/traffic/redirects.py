"""nginx's ``proxy_redirect default``: the back end's own address in Location, Content-Location
and Refresh becomes the address the client used.

A legacy server only knows itself as ``http://127.0.0.1:9746`` (IIS adds a trailing slash to a
folder with exactly such a redirect); passed through, that sends the client around the gateway
to an internal plain-HTTP address it cannot reach — or, worse, can.
"""

from __future__ import annotations

import re

# The back end's URL prefix: scheme, authority (case-insensitive) and then a path, query or end.
_TAIL = r"(?=[/?#]|$)"
REWRITTEN_HEADERS = ("Location", "Content-Location")


def backend_prefixes(host: str, port: int) -> re.Pattern[str]:
    """What the back end may call itself: http://host:port, and http://host when port is 80."""
    authority = re.escape(host if ":" not in host else f"[{host}]")
    ports = f"(?::{port})" if port != 80 else f"(?::{port})?"
    return re.compile(rf"(?i)^https?://{authority}{ports}{_TAIL}")


def rewrite_url(value: str, backend: re.Pattern[str], client_origin: str) -> str | None:
    """The value with the back end's prefix replaced by client_origin, or None when it has none."""
    rewritten, count = backend.subn(client_origin, value.strip(), count=1)
    return rewritten if count else None


_REFRESH_URL = re.compile(r"(?i)(^\s*\d+(?:\.\d*)?\s*[;,]\s*url\s*=\s*['\"]?)(.*)$")


def rewrite_refresh(value: str, backend: re.Pattern[str], client_origin: str) -> str | None:
    """``Refresh: 5; url=http://127.0.0.1:9746/x`` → the same with the client's origin."""
    match = _REFRESH_URL.match(value)
    if not match:
        return None
    url = rewrite_url(match.group(2), backend, client_origin)
    return None if url is None else match.group(1) + url


def client_origin(scheme: str, host_header: str, port: int) -> str:
    """scheme://host[:port] as the client addressed the gateway (the Host header it sent)."""
    if host_header:
        return f"{scheme}://{host_header}"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://127.0.0.1" + ("" if port == default else f":{port}")
