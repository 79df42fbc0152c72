"""What may reach the back end: refuse or normalise requests a lax parser could misread.

Runs in ``requestheaders`` before Routing and Auth, on every base, for HTTP/1 and HTTP/2 alike
(the raw HTTP/1 head was already checked byte by byte in addons/_engine_patches.py):

* methods outside ``limits.methods`` → 501, lower-case methods → 400;
* HTTP/2 only (HTTP/1 heads were measured while read): a target longer than
  ``limits.request_line_max_size`` → 414, more than ``limits.max_headers`` fields → 431;
* HTTP versions other than 1.0, 1.1 and 2 → 505;
* a control character in a header name or value → 400 (HTTP/2 headers never pass the HTTP/1 check);
* ``Content-Length`` that is not one plain decimal below 2^53 → 400;
* CONNECT → 501; ``Upgrade`` → 426 unless the base sets ``websocket: true`` and the upgrade is
  to WebSocket (the upgrade request then goes through Auth and Policy like any other);
* an absolute-form target (``GET http://x/...``, also HTTP/2's ``:path``) is forwarded in origin
  form, with the back end's Host set by Routing; ``*`` outside OPTIONS, a target without a
  leading ``/``, ``#`` and ``.``/``..`` segments → 400, on every base and both protocols
  (gateway.traffic.limits.check_target); an HTTP/1.1 head without one Host was refused while read;
* ``Connection`` and the fields it names are dropped (RFC 9110 §7.6.1; ``close``/``keep-alive``
  stay as the hop's own directive), before Routing and Identity set the gateway's headers; a
  ``Connection`` naming ``Host``, ``Content-Length`` or ``Transfer-Encoding`` → 400 (dropping
  those would unframe the forwarded body; gateway.traffic.limits.connection_options says why);
* HTTP/2: a connection-specific field (``connection``, ``transfer-encoding``, ``upgrade``, …,
  ``te`` other than ``trailers``) → 400 (RFC 9113 §8.2.2); HTTP/1 framing (one ``chunked`` or
  one plain Content-Length, else 501/400) was checked while the head was read;
* header hygiene (``limits.header_hygiene``, default on): the headers in ``limits.strip_headers``
  are removed (method overrides, IIS rewrite targets, client-address claims), and so is any
  header whose name, with ``_`` read as ``-``, starts with the identity prefix (``X_Gateway_Role``);
  Routing then sets ``Forwarded`` and ``X-Real-IP`` from what the gateway saw.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addons._context import current_config, listener_to_check
from addons._guard import deny, fail_closed
from gateway.config import GatewayConfig
from gateway.traffic.limits import (HeadRefused, check_content_length, check_method, check_target,
                                    connection_specific_in_http2, control_character_in, identity_lookalike,
                                    without_connection_fields)

logger = logging.getLogger("gateway.hygiene")

_TITLES = {400: "Bad Request", 414: "URI Too Long", 426: "Upgrade Required", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 505: "HTTP Version Not Supported"}
_VERSIONS = ("HTTP/1.0", "HTTP/1.1", "HTTP/2.0")


class Hygiene:
    def __init__(self) -> None:
        self._strip: frozenset[bytes] = frozenset()
        self._prefix = "x-gateway-"

    def apply_config(self, cfg: GatewayConfig) -> None:
        self._strip = frozenset(name.lower().encode("ascii") for name in cfg.limits.strip_headers)
        self._prefix = cfg.auth.header_prefix.strip().lower()

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        request = flow.request
        limits = current_config().limits
        http_version = request.http_version
        if http_version not in _VERSIONS:
            self._refuse(flow, 505, f"HTTP version {http_version} is not supported")
            return
        # request.method is upper-cased by mitmproxy; the raw one is what the back end would get.
        problem = check_method(request.data.method.decode("ascii", "replace"), limits.methods)
        if problem is not None:
            self._refuse(flow, *problem)
            return
        method = request.method
        if method == "CONNECT":
            self._refuse(flow, 501, "CONNECT is not supported by this gateway")
            return
        fields = request.headers.fields
        if http_version == "HTTP/2.0":
            # The HTTP/1 head was measured while it was read (addons/_engine_patches.py); an HTTP/2
            # head is bounded in bytes by SETTINGS, but its target and field count are checked here,
            # so both protocols forward the same heads.
            if len(request.data.path) > limits.request_line_max_size:
                self._refuse(flow, 414, f"the request target is longer than {limits.request_line_max_size} bytes")
                return
            if len(fields) > limits.max_headers:
                self._refuse(flow, 431, f"more than {limits.max_headers} header fields")
                return
        bad = control_character_in(fields)
        if bad is not None:
            self._refuse(flow, 400, "a header name or value holds a control character")
            return
        if http_version == "HTTP/2.0":
            specific = connection_specific_in_http2(fields)
            if specific is not None:
                self._refuse(flow, 400, f"the connection-specific field {specific.decode('ascii')!r} in HTTP/2")
                return
        # One pass over the names instead of a lookup (itself a pass) per header read below.
        lengths: list[str] = []
        upgrades: list[str] = []
        http2_settings = False
        strip = False
        connection = False
        strip_set, prefix = self._strip, self._prefix
        for name, value in fields:
            lower = name.lower()
            # As _stripped(lower), written out: once per header field of every request.
            if lower in strip_set or (b"_" in lower and identity_lookalike(lower.decode("latin-1"), prefix)):
                strip = True
            if lower == b"connection":
                connection = True
            elif lower == b"content-length":
                lengths.append(value.decode("utf-8", "surrogateescape"))
            elif lower == b"upgrade":
                upgrades.append(value.decode("utf-8", "surrogateescape"))
            elif lower == b"http2-settings":
                http2_settings = True
        reason = check_content_length(lengths)
        if reason is not None:
            self._refuse(flow, 400, reason)
            return
        if connection:
            # Decided before anything else reads the head; the fields themselves go further down,
            # after the target is settled (RFC 9110 §7.6.1: they are this hop's only).
            try:
                kept = without_connection_fields(fields)
            except HeadRefused as refused:
                self._refuse(flow, refused.status, refused.reason)
                return
        upgrade = ", ".join(upgrades) if upgrades else None  # as mitmproxy's headers.get folds them
        if upgrade is not None or http2_settings:
            if not (listener.base.websocket and upgrade is not None and upgrade.strip().lower() == "websocket"):
                self._refuse(flow, 426, "protocol upgrades are not allowed on this base",
                             {"Connection": "close"})
                return
        if request.authority and http_version != "HTTP/2.0":
            # HTTP/1 absolute-form: the host the client named is not the back end's business
            # (HTTP/2's :authority is its Host header and stays for Routing to handle).
            request.authority = ""
        # The same target rules for both protocols, on every base (HTTP/2's :path arrives raw:
        # "http://x/a", "*", "a", "/a/../b" would reach the back end as sent).
        raw_target = request.data.path.decode("utf-8", "surrogateescape")
        try:
            target = check_target(method, raw_target)
        except HeadRefused as refused:
            self._refuse(flow, refused.status, refused.reason)
            return
        if target != raw_target:
            request.path = target
        if connection:
            # A client could otherwise name X-Forwarded-For or the identity headers and have a back
            # end (or a proxy in between) drop what the gateway sets; those are set after this, by
            # Routing and Identity, so they can never be named away. ``close`` / ``keep-alive``
            # stay: mitmproxy reads them on this request to end the hop.
            request.headers.fields = kept
        if strip and limits.header_hygiene:
            self._strip_headers(request)

    def _strip_headers(self, request: http.Request) -> None:
        kept = tuple(field for field in request.headers.fields if not self._stripped(field[0].lower()))
        if len(kept) != len(request.headers.fields):
            request.headers.fields = kept

    def _stripped(self, lower: bytes) -> bool:
        """Whether a (lower-cased) header name is one hygiene removes."""
        return lower in self._strip or (b"_" in lower and identity_lookalike(lower.decode("latin-1"), self._prefix))

    @staticmethod
    def _refuse(flow: http.HTTPFlow, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        flow.metadata["gateway_verdict"] = "bad-request"
        flow.metadata["gateway_reason"] = reason
        deny(flow, status, f"{status} {_TITLES.get(status, 'Error')}: {reason}.", headers)
