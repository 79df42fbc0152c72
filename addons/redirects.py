"""The back end's own address in Location, Content-Location and Refresh becomes the client's
(``bases[].proxy_redirect``; the decision is gateway/traffic/redirects.py)."""

from __future__ import annotations

from functools import lru_cache
import re

from mitmproxy import http

from addons._context import listener_of
from addons._guard import fail_closed
from gateway.traffic import redirects


@lru_cache(maxsize=256)
def _backend(host: str, port: int) -> re.Pattern[str]:
    return redirects.backend_prefixes(host, port)


class ProxyRedirect:
    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or not (300 <= response.status_code < 400 or "Refresh" in response.headers
                                    or "Content-Location" in response.headers):
            return
        listener = listener_of(flow.client_conn)
        if listener is None or not listener.base.proxy_redirect:
            return
        backend = _backend(listener.endpoint.backend_host, listener.endpoint.backend_port)
        scheme = "https" if flow.client_conn.tls_established else "http"
        origin = redirects.client_origin(scheme, flow.metadata.get("gateway_client_host", ""), listener.port)
        for name in redirects.REWRITTEN_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                rewritten = redirects.rewrite_url(value, backend, origin)
                if rewritten is not None:
                    response.headers[name] = rewritten
        refresh = response.headers.get("Refresh")
        if refresh is not None:
            rewritten = redirects.rewrite_refresh(refresh, backend, origin)
            if rewritten is not None:
                response.headers["Refresh"] = rewritten
