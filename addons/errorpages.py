"""Short, honest error texts for failures mitmproxy answers itself.

When the back end is down, times out or a request is malformed, mitmproxy's HTTP layer writes
its own HTML page, naming itself and the internal address it failed to reach. Clients of the
gateway get one line naming the base instead; the detail goes to the log.

mitmproxy builds those pages with ``format_error(status, message)`` deep inside its HTTP/1 and
HTTP/2 layers, where no flow is at hand, so that function is replaced in both modules, and the
base is found through a context variable set when the client connected: mitmproxy runs each
client connection in its own asyncio task, and tasks it spawns later inherit the value.
"""

from __future__ import annotations

import contextvars
import logging
from http import HTTPStatus

from mitmproxy import connection, http
from mitmproxy.proxy.commands import SendData
from mitmproxy.proxy.layers.http import ResponseProtocolError, _http1, _http2

from addons._context import listener_of
from gateway.config import Listener

logger = logging.getLogger("gateway.backend")

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("gateway_listener", default=None)
_timed_out: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("gateway_timed_out", default=None)


def mark_timed_out(client: connection.Client) -> None:
    """Called by the timeout watchdog before it cuts the back-end connection of a client."""
    _TIMED_OUT_CLIENTS.add(client.id)


_TIMED_OUT_CLIENTS: set[str] = set()


CLIENT_CLOSED = "Client disconnected."


def client_closed(flow: http.HTTPFlow) -> bool:
    """The client went away before its answer: nobody's failure, least of all the back end's."""
    if not flow.error:
        return False
    # A request body cut short (the client left, or a client timeout closed it) is the client's
    # doing too; the same text about an answer (request complete) is the back end's.
    return flow.error.msg == CLIENT_CLOSED or (
        flow.request.timestamp_end is None and "peer closed connection without sending complete" in flow.error.msg)


def never_reached_back_end(flow: http.HTTPFlow) -> bool:
    """mitmproxy refused the request itself (a malformed one, a CONNECT to this reverse proxy)
    before any back-end connection was tried: the client's fault, answered 400."""
    # Routing marks every request it sends on; mitmproxy's own refusals skip the gateway's hooks.
    return bool(flow.error and "gateway_base" not in flow.metadata and not client_closed(flow))


def failure(flow: http.HTTPFlow) -> tuple[int, str]:
    """(status the client got, verdict) for a flow that ended in an error instead of a response."""
    if client_closed(flow):
        return 499, "client-closed"  # nginx's code: the client left before the answer
    if never_reached_back_end(flow):
        return 400, "bad-request"
    return (504 if is_timed_out(flow.client_conn) else 502), "backend-error"


def is_timed_out(client: connection.Client) -> bool:
    """Whether the back end of this client's current request was cut off by the watchdog."""
    return client.id in _TIMED_OUT_CLIENTS


def error_text(status: int, base_name: str | None, timed_out: bool) -> str:
    where = f" of base {base_name!r}" if base_name else ""
    if timed_out:
        return f"504 Gateway Timeout: the back end{where} did not answer in time."
    if status == 502:
        return f"502 Bad Gateway: the back end{where} is not reachable."
    if status == 413:
        return "413 Payload Too Large: the request body is larger than the gateway accepts."
    if 400 <= status < 500:
        return f"{status} {HTTPStatus(status).phrase}: the gateway could not read this request."
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{status} {phrase}: the gateway could not complete this request{where}."


def _error_status(status_code: int) -> tuple[int, bool]:
    flag = _timed_out.get()
    timed_out = bool(flag and flag[0])
    return (504 if timed_out else status_code), timed_out


def _format_error(status_code: int, message: str) -> bytes:
    status, timed_out = _error_status(status_code)
    listener = _listener.get()
    return (error_text(status, listener.base.name if listener else None, timed_out) + "\n").encode()


def _make_error_response(status_code: int, message: str = "") -> bytes:
    status, _ = _error_status(status_code)
    resp = http.Response.make(
        status,
        _format_error(status_code, message),
        http.Headers(Connection="close", Content_Type="text/plain; charset=utf-8", Cache_Control="no-store"),
    )
    return _http1.http1.assemble_response(resp)


_h2_handle_event = _http2.Http2Server._handle_event


def _h2_server_handle_event(self: _http2.Http2Server, event: object):  # type: ignore[no-untyped-def]
    """HTTP/2's error answer, like HTTP/1's: the right status (504 after a timeout), plain text,
    and no ``server: mitmproxy`` header. Anything else goes to mitmproxy's own handling."""
    if isinstance(event, ResponseProtocolError) and self.is_open_for_us(event.stream_id):
        stream = self.h2_conn.streams.get(event.stream_id)
        status = event.code.http_status_code()
        if stream is not None and status is not None and not stream.state_machine.headers_sent:
            self.h2_conn.send_headers(event.stream_id, [
                (b":status", b"%d" % _error_status(status)[0]),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"cache-control", b"no-store"),
            ])
            self.h2_conn.send_data(event.stream_id, _format_error(status, event.message), end_stream=True)
            yield SendData(self.conn, self.h2_conn.data_to_send())
            return
    yield from _h2_handle_event(self, event)


def install() -> None:
    """Replace mitmproxy's error page builders. Idempotent."""
    _http1.make_error_response = _make_error_response
    _http2.format_error = _format_error
    _http2.Http2Server._handle_event = _h2_server_handle_event  # type: ignore[method-assign]


class ErrorPages:
    def __init__(self) -> None:
        install()

    def client_connected(self, client: connection.Client) -> None:
        _listener.set(listener_of(client))
        _timed_out.set([False])

    def client_disconnected(self, client: connection.Client) -> None:
        # A client that left before the error hook read its mark (client_closed returns early)
        # would otherwise stay in the set for the life of the process.
        _TIMED_OUT_CLIENTS.discard(client.id)

    def error(self, flow: http.HTTPFlow) -> None:
        listener = listener_of(flow.client_conn)
        if client_closed(flow):
            flow.metadata.setdefault("gateway_verdict", "client-closed")
            logger.debug("client %s closed the connection before its answer", flow.client_conn.peername)
            return
        if never_reached_back_end(flow):
            flow.metadata.setdefault("gateway_verdict", "bad-request")
            logger.info("refused a request the gateway cannot read from %s (%s %s): %s",
                        flow.client_conn.peername[0] if flow.client_conn.peername else "?", flow.request.method,
                        flow.request.path.split("?", 1)[0][:200], flow.error.msg if flow.error else "",
                        extra={"event": "bad-request"})
            return
        flag = _timed_out.get()
        if flow.client_conn.id in _TIMED_OUT_CLIENTS:
            _TIMED_OUT_CLIENTS.discard(flow.client_conn.id)
            if flag is not None:
                flag[0] = True
        flow.metadata.setdefault("gateway_verdict", "backend-error")
        name = listener.base.name if listener else "?"
        backend = listener.endpoint.backend if listener else "?"
        detail = flow.error.msg if flow.error else "unknown error"
        logger.warning("base %r: back end %s failed for %s %s: %s", name, backend,
                       flow.request.method, flow.request.path.split("?", 1)[0], detail,
                       extra={"event": "backend-error", "base": name})
