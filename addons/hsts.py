"""Strict-Transport-Security for bases that ask for it (``hsts`` in the base's config).

Only on TLS connections: RFC 6797 7.2 says a host must not send it over plain HTTP.
"""

from __future__ import annotations

from mitmproxy import http

from addons._context import listener_of

HEADER = "Strict-Transport-Security"


class Hsts:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._add(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        # Answers made by the gateway itself (denials, error pages) skip responseheaders.
        self._add(flow)

    @staticmethod
    def _add(flow: http.HTTPFlow) -> None:
        if flow.response is None or not flow.client_conn.tls_established:
            return
        listener = listener_of(flow.client_conn)
        if listener is None or listener.base.hsts <= 0:
            return
        flow.response.headers[HEADER] = f"max-age={listener.base.hsts}"
