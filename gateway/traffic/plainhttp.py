"""Plain HTTP on an https base's port: refuse, or send a browser to https:// (``bases[].http_redirect``).

Only a GET or HEAD that carries no credential is redirected. A request with a password, a
barcode or a session cookie in clear text has already leaked it on the wire; redirecting would
teach the client that this works, so it is refused with 400 and logged, as it always was.
"""

from __future__ import annotations

from collections.abc import Mapping

REDIRECTABLE_METHODS = frozenset({"GET", "HEAD"})
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


def carries_credentials(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in CREDENTIAL_HEADERS)


def redirect_target(method: str, headers: Mapping[str, str], host_header: str, port: int,
                    path: str) -> str | None:
    """The https:// URL to send this plain-HTTP request to, or None when it must be refused."""
    if method.upper() not in REDIRECTABLE_METHODS or carries_credentials(headers):
        return None
    host = host_header.strip() or f"127.0.0.1:{port}"
    if any(c in host for c in "/\\@ \t\r\n") or not path.startswith("/"):
        return None  # nothing a client wrote may turn the redirect into another site
    return f"https://{host}{path}"
