"""Send each request to its base's back end, with the X-Forwarded-* headers the back end expects.

The Host header is kept by mitmproxy (``keep_host_header``) so that X-Forwarded-Host can carry
what the client asked for; it is then set to the back end's own address, as nginx does by
default — or left as the client sent it with ``proxy.preserve_host``, for back ends that build
absolute links (OData's @odata.nextLink) from it. Incoming X-Forwarded-* values are replaced, not appended: the gateway is the edge,
and anything a client put there is unverified.
"""

from __future__ import annotations

from mitmproxy import http

from addons._context import current_config, listener_to_check
from addons._guard import fail_closed
from addons._headers import set_many


def client_ip(flow: http.HTTPFlow) -> str:
    host = flow.client_conn.peername[0] if flow.client_conn.peername else ""
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; back ends expect a.b.c.d.
    return host[7:] if host.startswith("::ffff:") and "." in host else host


# The five forwarding headers depend on the client's address, TLS and the Host it asked for
# only: made once per such triple (a connection's requests repeat it) instead of per request.
FORWARDING_CACHED = 4096
_forwarding: dict[tuple[str, bool, str], tuple[tuple[bytes, bytes], ...]] = {}


def forwarding_headers(address: str, tls: bool, original_host: str) -> tuple[tuple[bytes, bytes], ...]:
    key = (address, tls, original_host)
    cached = _forwarding.get(key)
    if cached is not None:
        return cached
    proto = "https" if tls else "http"
    # The standard form (RFC 7239) and nginx's habit, replacing whatever the client sent.
    node = f'"[{address}]"' if ":" in address else address
    forwarded = f'for={node};proto={proto}' + (
        f';host="{original_host}"' if original_host and '"' not in original_host else "")
    made = ((b"X-Forwarded-For", address.encode("utf-8", "surrogateescape")),
            (b"X-Forwarded-Proto", proto.encode()),
            (b"X-Forwarded-Host", original_host.encode("utf-8", "surrogateescape")),
            (b"Forwarded", forwarded.encode("utf-8", "surrogateescape")),
            (b"X-Real-IP", address.encode("utf-8", "surrogateescape")))
    if len(_forwarding) >= FORWARDING_CACHED:
        _forwarding.clear()
    _forwarding[key] = made
    return made


class Routing:
    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        endpoint = listener.endpoint
        request = flow.request
        original_host = request.host_header or ""
        # Reading the back end from the live configuration makes a changed back end address
        # take effect at once on reload, even for connections that were already open.
        request.scheme = "http"
        # Through .data: the host and port setters would rewrite the Host header as well.
        request.data.host = endpoint.backend_host
        request.data.port = endpoint.backend_port
        proxy = current_config().proxy
        updates: list[tuple[bytes, bytes]] = []
        if not proxy.preserve_host or not original_host:
            host = f"{endpoint.backend_host}:{endpoint.backend_port}"
            if request.is_http2 or request.is_http3:
                request.host_header = host
            else:
                updates.append((b"Host", host.encode("utf-8", "surrogateescape")))
        # What the client called the gateway: ProxyRedirect puts it back into the back end's redirects.
        flow.metadata["gateway_client_host"] = original_host
        flow.metadata["gateway_base"] = listener.base.name
        flow.metadata["gateway_base_id"] = listener.base.id
        flow.metadata["gateway_port_role"] = listener.role
        if proxy.forwarded_headers:
            updates += forwarding_headers(client_ip(flow), flow.client_conn.tls_established, original_host)
        if updates:
            # One pass over the fields instead of one per header (same result as headers[name] = ...).
            set_many(request.headers, updates)
