"""An https base answers only over TLS.

mitmproxy's ``reverse:http://`` listener sniffs the first bytes and happily speaks plaintext
HTTP on the same port. On an https base such a request is answered here with 400 — as nginx
does ("The plain HTTP request was sent to HTTPS port") — and never forwarded; with
``bases[].http_redirect`` a browser's GET/HEAD without credentials gets a 301 to https://
instead (gateway/traffic/plainhttp.py decides).
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed
from addons.routing import client_ip
from gateway.traffic import plainhttp

logger = logging.getLogger("gateway.https")


class HttpsOnly:
    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        if not listener.base.https or flow.client_conn.tls_established:
            return
        request = flow.request
        target = None
        if listener.base.http_redirect:
            target = plainhttp.redirect_target(request.method, request.headers, request.host_header or "",
                                               listener.port, request.path)
        if target is not None:
            flow.metadata["gateway_verdict"] = "redirect-https"
            flow.metadata["gateway_reason"] = "plain HTTP on an HTTPS port, redirected"
            deny(flow, 301, f"301 Moved Permanently: use {target}", headers={"Location": target})
            return
        flow.metadata["gateway_verdict"] = "denied-https"
        flow.metadata["gateway_reason"] = "plain HTTP on an HTTPS port"
        if plainhttp.carries_credentials(request.headers):
            logger.warning("plain HTTP with credentials on HTTPS port %d of base %r from %s: refused",
                           listener.port, listener.base.name, client_ip(flow),
                           extra={"event": "cleartext-credentials", "client": client_ip(flow),
                                  "base": listener.base.name})
        deny(flow, 400, f"400 Bad Request: port {listener.port} of base {listener.base.name!r} "
                        f"accepts only HTTPS; use https://")
