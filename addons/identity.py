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

from typing import Any
from urllib.parse import quote

from mitmproxy import http

from addons._context import listener_of
from addons._guard import already_answered, deny, fail_closed
from gateway.config import ConfigError, GatewayConfig

SESSION_COOKIE = "gateway_session"
SESSION_HEADER = "X-Gateway-Session"
DEFAULT_PREFIX = "X-Gateway-"
DEVICE_METADATA = "gateway_device"  # set by ClientAuth: the device certificate's name
SESSION_COOKIE_BYTES = SESSION_COOKIE.encode("ascii")
# flow.metadata: the identity set in requestheaders and the header fields it added, for the check in request
STAMP_KEY = "gateway_identity_headers"
ENCODED_CACHE_ENTRIES = 4096


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
        self._stripped: tuple[str, ...] = ()
        self._stripped_bytes: tuple[bytes, ...] = ()
        self._names: tuple[tuple[str, bytes, str], ...] = ()
        self._set_prefix(DEFAULT_PREFIX)
        # Encoded header values by name: the same few users send most requests.
        self._encoded: dict[str, str] = {}


    def _set_prefix(self, prefix: str) -> None:
        self.prefix = prefix
        # The added header fields by identity (_fields_for): their names carry the prefix.
        self._fields: dict[tuple[Any, ...], tuple[tuple[tuple[bytes, bytes], ...],
                                                  tuple[tuple[bytes, bytes], ...]]] = {}
        self._stripped = (prefix.lower(), SESSION_HEADER.lower())
        self._stripped_bytes = tuple(p.encode("ascii") for p in self._stripped)
        # (metadata key, lower-case header name, header name) of the headers set from the user.
        self._names = tuple((key, (prefix + suffix).lower().encode("ascii"), prefix + suffix)
                            for key, suffix in (("gateway_user", "User"), ("gateway_group", "Group"),
                                                ("gateway_role", "Role"), (DEVICE_METADATA, "Device")))
        self._keys = tuple(key for key, _lower, _name in self._names)

    def apply_config(self, cfg: GatewayConfig) -> None:
        prefix = cfg.auth.header_prefix.strip()
        if len(prefix) < 2 or not all(c.isascii() and (c.isalnum() or c == "-") for c in prefix):
            # An empty prefix would strip every header; a strange one would never match.
            raise ConfigError(cfg.source, "auth.header_prefix",
                              f"{cfg.auth.header_prefix!r} must be letters, digits and '-', e.g. X-Gateway-")
        self._set_prefix(prefix)
        self._encoded = {}

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if already_answered(flow):
            return
        self._rewrite(flow)

    # Checked again when the whole request is in: Auth may finish only then on a buffered
    # request, and an addon between the two hooks must not be able to leave a forged header
    # behind. The check is one pass over the raw header names; only a request that changed
    # since requestheaders (or an identity that changed) is rewritten in full.
    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if already_answered(flow):
            return
        listener = listener_of(flow.client_conn)
        if listener is not None and self._unchanged(flow, listener.base.forward_authorization):
            return
        self._rewrite(flow)

    def _rewrite(self, flow: http.HTTPFlow) -> None:
        flow.metadata.pop(STAMP_KEY, None)
        headers = flow.request.headers
        kept, has_cookie = self._scan(headers.fields)
        if len(kept) != len(headers.fields):
            headers.fields = tuple(kept)
        if has_cookie:
            cookie_values = headers.get_all("cookie")
            if any(SESSION_COOKIE in v for v in cookie_values):
                headers.set_all("cookie", [c for c in map(strip_session_cookie, cookie_values) if c])
        listener = listener_of(flow.client_conn)
        if listener is None:
            flow.metadata["gateway_verdict"] = "gateway-error"
            deny(flow, 503, "503 Service Unavailable: this port is no longer served by the gateway.")
            return
        if not listener.base.forward_authorization:
            headers.pop("authorization", None)
        identity = self._identity(flow)
        new_fields, added = self._fields_for(identity)
        if new_fields:
            # Every prefixed header is gone, so adding equals setting.
            headers.fields = headers.fields + new_fields
        flow.metadata[STAMP_KEY] = (identity, added)

    def _fields_for(self, identity: tuple[Any, ...]) -> tuple[tuple[tuple[bytes, bytes], ...],
                                                              tuple[tuple[bytes, bytes], ...]]:
        """The header fields an identity adds, and their (lower-case name, value) for the stamp:
        made once per identity (the same few users send every request) and per prefix."""
        try:
            made = self._fields.get(identity)
        except TypeError:  # an unhashable value from another addon: made every time
            return self._make_fields(identity)
        if made is None:
            if len(self._fields) >= ENCODED_CACHE_ENTRIES:
                self._fields.clear()
            made = self._fields[identity] = self._make_fields(identity)
        return made

    def _make_fields(self, identity: tuple[Any, ...]) -> tuple[tuple[tuple[bytes, bytes], ...],
                                                               tuple[tuple[bytes, bytes], ...]]:
        fields: list[tuple[bytes, bytes]] = []
        added: list[tuple[bytes, bytes]] = []
        # The user's headers with a user only; the device's also without one (an optional base).
        if identity[0] or identity[-1]:
            for (key, lower, name), value in zip(self._names, identity):
                if value and (identity[0] or key == DEVICE_METADATA):
                    encoded = self._encode(value).encode("ascii")
                    fields.append((name.encode("ascii"), encoded))
                    added.append((lower, encoded))
        return tuple(fields), tuple(added)

    def _scan(self, fields: tuple[tuple[bytes, bytes], ...]) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The header fields to keep (all but the prefixed ones), and whether a Cookie is among them."""
        kept: list[tuple[bytes, bytes]] = []
        has_cookie = False
        for field in fields:
            raw = field[0]
            if raw.isascii():
                lower = raw.lower()
                if lower.startswith(self._stripped_bytes):
                    continue
                has_cookie = has_cookie or lower == b"cookie"
            elif raw.decode("utf-8", "surrogateescape").lower().startswith(self._stripped):
                # Unicode case mapping can turn a non-ASCII name into the prefix: compare as text.
                continue
            kept.append(field)
        return kept, has_cookie

    def _unchanged(self, flow: http.HTTPFlow, forward_authorization: bool) -> bool:
        """True when the headers are exactly as requestheaders left them, for the same identity."""
        stamp = flow.metadata.get(STAMP_KEY)
        if stamp is None or stamp[0] != self._identity(flow):
            return False
        found: list[tuple[bytes, bytes]] = []
        for raw, value in flow.request.headers.fields:
            if not raw.isascii():
                return False
            lower = raw.lower()
            if lower.startswith(self._stripped_bytes):
                found.append((lower, value))
            elif lower == b"cookie":
                if SESSION_COOKIE_BYTES in value:
                    return False
            elif lower == b"authorization" and not forward_authorization:
                return False
        return tuple(found) == stamp[1]

    def _identity(self, flow: http.HTTPFlow) -> tuple[Any, ...]:
        get = flow.metadata.get
        identity = tuple([get(key) for key in self._keys])
        for value in identity:
            if isinstance(value, (list, set)):
                return tuple(_frozen(v) for v in identity)
        return identity

    def _encode(self, value: Any) -> str:
        if not isinstance(value, str):
            return encode_header_value(value)
        encoded = self._encoded.get(value)
        if encoded is None:
            if len(self._encoded) >= ENCODED_CACHE_ENTRIES:
                self._encoded.clear()
            encoded = self._encoded[value] = encode_header_value(value)
        return encoded


def _frozen(value: Any) -> Any:
    """An immutable copy for comparison: a list changed in place must not look unchanged."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, set):
        return frozenset(value)
    return value
