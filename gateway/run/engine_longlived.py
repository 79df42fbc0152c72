"""A long-lived client connection does not grow with the requests it carried (issue 19: load held
over time). Both found by bench/soak.py ``--trace-memory``: a terminal that keeps one connection
open all shift made the process grow with every request.

- Closed back-end connections. mitmproxy's ``HttpLayer`` keeps every back-end connection a client
  connection opened in its ``connections`` dict, with the connection's layer (its last request
  and answer), and never takes one out: they go only when the client disconnects. An HTTP/2
  client to an HTTP/1 back end gets a new back-end connection for every request (mitmproxy does
  not share one between streams), so that was ~5 KiB more per request, and every new request
  walked the whole dict looking for one to reuse. After the layer has handled a back end's
  ``ConnectionClosed``, a connection that is fully closed (never again an event: mitmproxy's
  reader for it has ended) is removed. Kept: the layer's own ``context.server``, a connection
  that failed (mitmproxy answers later requests to the same address on that client connection
  with its error), and one only half closed (its layer may still send on it) until it is closed.
- Closed HTTP/2 streams. h2 remembers how each closed stream ended (to ignore the frames that
  cross a reset) for the last 65,536 streams of a connection: ~90 bytes a request, up to ~5.6 MiB
  per connection. The gateway keeps the last ``CLOSED_STREAMS_KEPT``; a frame for a stream
  forgotten that long ago ends the connection with a protocol error instead of being ignored
  (a frame can only cross a reset within a round trip, and a client has at most
  ``limits.http2_max_concurrent_streams``, default 100, open meanwhile).

``install()`` checks that mitmproxy and h2 still have the shape this relies on and raises
otherwise.
"""

from __future__ import annotations

import inspect
from typing import Any, Generator

import h2.connection
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import events
from mitmproxy.proxy.layers import http as _http
from mitmproxy.proxy.layers.http import _http_h2


class MitmproxyMoved(RuntimeError):
    """mitmproxy no longer looks as this patch expects."""


_original_handle_event = _http.HttpLayer._handle_event
_HALF_CLOSED = "_gateway_half_closed"  # the layer's back-end connections that may still be written to
_installed = False
CLOSED_STREAMS_KEPT = 512


def _forgettable(layer: Any, connection: Any) -> bool:
    return (connection is not layer.context.client and connection is not layer.context.server
            and connection.state is ConnectionState.CLOSED and not connection.error
            and connection not in layer.waiting_for_establishment)


def _handle_event(self: Any, event: events.Event) -> Generator[Any, Any, None]:
    yield from _original_handle_event(self, event)
    waiting = getattr(self, _HALF_CLOSED, None)
    if isinstance(event, events.ConnectionClosed) and event.connection in self.connections:
        if _forgettable(self, event.connection):
            del self.connections[event.connection]
        elif event.connection is not self.context.client and event.connection.state is ConnectionState.CAN_WRITE:
            if waiting is None:
                waiting = set()
                setattr(self, _HALF_CLOSED, waiting)
            waiting.add(event.connection)
    if waiting:
        for connection in [c for c in waiting if c.state is ConnectionState.CLOSED]:
            waiting.discard(connection)
            if connection in self.connections and _forgettable(self, connection):
                del self.connections[connection]


def install() -> None:
    global _installed
    if _installed:
        return
    layer = _http.HttpLayer
    source = inspect.getsource(layer)
    if not inspect.isgeneratorfunction(_original_handle_event) \
            or "self.connections[command.connection] = child" not in source \
            or "self.connections[context.server] = stack[0]" not in source \
            or "handler = self.connections[event.connection]" not in source \
            or "waiting_for_establishment" not in source \
            or hasattr(layer, _HALF_CLOSED):
        raise MitmproxyMoved("mitmproxy changed HttpLayer's connections; gateway/run/engine_longlived.py must be "
                             "updated")
    if getattr(h2.connection.H2Connection, "MAX_CLOSED_STREAMS", None) != 2**16 \
            or "size_limit=self.MAX_CLOSED_STREAMS" not in inspect.getsource(h2.connection.H2Connection.__init__) \
            or not issubclass(_http_h2.BufferedH2Connection, h2.connection.H2Connection):
        raise MitmproxyMoved("h2 changed how it remembers closed streams; gateway/run/engine_longlived.py must be "
                             "updated")
    layer._handle_event = _handle_event  # type: ignore[method-assign]
    _http_h2.BufferedH2Connection.MAX_CLOSED_STREAMS = CLOSED_STREAMS_KEPT
    _installed = True
