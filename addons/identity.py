"""Who the user is, told to the back end in headers no client can forge.

Every incoming header with the gateway's prefix (``X-Gateway-`` by default, any case) is removed
on every base, then ``X-Gateway-User``, ``-Group`` and ``-Role`` are set from what Auth
established. Values are UTF-8 percent-encoded (RFC 3986) — always, so the back end decodes every
value the same way (.NET: ``Uri.UnescapeDataString``; Python: ``urllib.parse.unquote``):
``Иванов`` arrives as ``%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2``, ``ivanov`` unchanged.

The gateway's own session token (cookie ``gateway_session``, header ``X-Gateway-Session``)
never reaches the back end. ``Authorization`` is forwarded unchanged unless the base sets
``forward_authorization: false``.
"""

from __future__ import annotations

from urllib.parse import quote

from mitmproxy import http

from addons._context import listener_of
from addons._guard import already_answered, deny, fail_closed
from gateway.config import ConfigError, GatewayConfig

SESSION_COOKIE = "gateway_session"
SESSION_HEADER = "X-Gateway-Session"
DEFAULT_PREFIX = "X-Gateway-"


def encode_header_value(value: object) -> str:
    """Percent-encode UTF-8 so any name fits an ASCII header and decodes one way.

    Several values (a user in several groups) are encoded one by one and joined with ','.
    """
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ",".join(quote(str(v), safe="") for v in items)
    return quote(str(value), safe="")


def strip_session_cookie(cookie_header: str) -> str:
    """Drop the gateway's session cookie from one Cookie header, keeping the others as sent."""
    kept = [part for part in cookie_header.split(";")
            if part.strip() and part.split("=", 1)[0].strip() != SESSION_COOKIE]
    return "; ".join(part.strip() for part in kept)


class Identity:
    def __init__(self) -> None:
        self.prefix = DEFAULT_PREFIX

    def apply_config(self, cfg: GatewayConfig) -> None:
        prefix = cfg.auth.header_prefix.strip()
        if len(prefix) < 2 or not all(c.isascii() and (c.isalnum() or c == "-") for c in prefix):
            # An empty prefix would strip every header; a strange one would never match.
            raise ConfigError(cfg.source, "auth.header_prefix",
                              f"{cfg.auth.header_prefix!r} must be letters, digits and '-', e.g. X-Gateway-")
        self.prefix = prefix

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._rewrite(flow)

    # Run again when the whole request is in: Auth may finish only then on a buffered request,
    # and an addon between the two hooks must not be able to leave a forged header behind.
    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        self._rewrite(flow)

    def _rewrite(self, flow: http.HTTPFlow) -> None:
        if already_answered(flow):
            return
        headers = flow.request.headers
        prefix = self.prefix.lower()
        for name in {n for n in headers.keys() if n.lower().startswith((prefix, SESSION_HEADER.lower()))}:
            del headers[name]
        cookies = [strip_session_cookie(v) for v in headers.get_all("cookie")]
        if any(SESSION_COOKIE in v for v in headers.get_all("cookie")):
            headers.set_all("cookie", [c for c in cookies if c])
        listener = listener_of(flow.client_conn)
        if listener is None:
            flow.metadata["gateway_verdict"] = "gateway-error"
            deny(flow, 503, "503 Service Unavailable: this port is no longer served by the gateway.")
            return
        if not listener.base.forward_authorization:
            headers.pop("authorization", None)
        user = flow.metadata.get("gateway_user")
        if user:
            headers[self.prefix + "User"] = encode_header_value(user)
            for key, suffix in (("gateway_group", "Group"), ("gateway_role", "Role")):
                value = flow.metadata.get(key)
                if value:
                    headers[self.prefix + suffix] = encode_header_value(value)
