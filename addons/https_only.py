"""An https base answers only over TLS.

mitmproxy's ``reverse:http://`` listener sniffs the first bytes and happily speaks plaintext
HTTP on the same port. On an https base such a request is answered here with 400 — as nginx
does ("The plain HTTP request was sent to HTTPS port") — and never forwarded.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed

logger = logging.getLogger("gateway.https")


class HttpsOnly:
    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        if listener.base.https and not flow.client_conn.tls_established:
            flow.metadata["gateway_verdict"] = "denied-https"
            flow.metadata["gateway_reason"] = "plain HTTP on an HTTPS port"
            deny(flow, 400, f"400 Bad Request: port {listener.port} of base {listener.base.name!r} "
                            f"accepts only HTTPS; use https://")
