"""The few places where mitmproxy itself must be changed to survive hostile clients.

mitmproxy 12 has no limit on an HTTP/1 request head while it is being read (its own code says
``FIXME: protect against header size DoS``), no way to set HTTP/2 server settings, no limit on
client stream resets (CVE-2023-44487), and raises NotImplementedError on chunked trailers. None
of that is reachable through options or hooks, so it is changed here, once, at import:

* ``Http1Server.read_headers`` — the head is measured before mitmproxy parses it: past
  ``limits.request_line_max_size`` (414) or ``limits.client_header_max_size`` (431) the client
  gets the status and the connection is closed, and the buffer is dropped, so memory never grows
  with what is sent. A complete head is checked byte by byte (gateway.traffic.limits.check_request_head)
  before mitmproxy's lenient parser sees it: bare CR / NUL / control characters, obs-fold, HTTP
  versions other than 1.0/1.1, too many fields.
* ``Http1Server.wait`` — bytes a client sends while its request is being answered are capped too.
* ``_http1.make_body_reader`` — chunked trailers are dropped (never forwarded, never a crash),
  and a chunk-size line or trailer section longer than the head limit ends the connection.
* ``ConnectionHandler.drain_writers`` — back-pressure for HTTP/2 clients that open no
  flow-control window: the back end is read only while less than ``limits.response_buffer``
  is queued for the client.
* ``ConnectionHandler.handle_connection`` — a connection whose handler is cancelled before
  mitmproxy's own clean-up ran has its socket closed at once (else it leaks until GC).
* ``Http1Client.send`` — an HTTP/2 request body without Content-Length reaches an HTTP/1 back
  end with Content-Length (known whole) or chunked encoding (streamed), never unframed, where the
  back end would read it as a second, unchecked request.
* ``Http2Server`` — advertises ``limits.http2_max_concurrent_streams`` and the head limit as
  SETTINGS, and answers more than ``limits.http2_max_resets`` client resets in 10 s with
  GOAWAY(ENHANCE_YOUR_CALM); closing the connection cancels every open stream, and with it
  its back-end request. This happens in the HTTP/2 layer, before any hook: a ``user_auth`` base
  is protected before credentials are even looked at.

``install()`` checks that every patched name still exists with the expected shape and raises
otherwise, so a mitmproxy upgrade that moves them stops the gateway at start instead of leaving
it unprotected.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import re
import time
import weakref
from typing import Any, Callable

import h11
import h2.errors
import h2.events
import h2.settings
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from mitmproxy.proxy import commands, events, server
from mitmproxy.proxy.layers.http import _events as _http_events
from mitmproxy.proxy.layers.http import _http1, _http2

from gateway.traffic.limits import RESET_WINDOW, HeadRefused, LimitSettings, check_request_head

_limits = LimitSettings()
# Set by addons/limits.py: called as on_event(kind, client, detail) for metrics and the log,
# and body_limit(client) → the request body limit of the client's base in bytes (0: none).
on_event: Callable[[str, Any, str], None] = lambda kind, client, detail: None
body_limit: Callable[[Any], int] = lambda client: 0
# The body limit of the head being parsed, for make_body_reader: both run in one synchronous
# pass of the same layer (no await in between), so no other connection can change it.
_pending_body_limit = 0

_REASONS = {400: "Bad Request", 413: "Content Too Large", 414: "URI Too Long", 501: "Not Implemented",
            431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported"}
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def set_limits(limits: LimitSettings) -> None:
    global _limits
    _limits = limits


def plain_response(status: int, text: str) -> bytes:
    body = f"{status} {_REASONS.get(status, 'Error')}: {text}\n".encode("utf-8")
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n").encode() + body


def head_problem(data: bytes | bytearray, limits: LimitSettings, client: Any = None,
                 start: int = 0) -> tuple[HeadRefused | None, bool]:
    """Check what has arrived of a request head: (refusal or None, whether the head is complete).

    ``start`` is where the blank line that ends the head may begin at the earliest (what was
    searched before): a head sent a byte at a time is scanned once, not once per byte.
    """
    global _pending_body_limit
    lead = 0  # blank lines before a request are tolerated (RFC 9112 §2.2)
    while lead < len(data) and lead < 64 and data[lead] in b"\r\n":
        lead += 1
    size = len(data) - lead
    line_end = data.find(b"\n", lead, lead + limits.request_line_max_size + 2)
    if line_end == -1 and size > limits.request_line_max_size:
        return HeadRefused(414, f"the request line is longer than {limits.request_line_max_size} bytes"), False
    end = _BLANK_LINE.search(data, max(lead, start), lead + limits.client_header_max_size + 4)
    if end is None:
        if size > limits.client_header_max_size:
            return HeadRefused(431, f"the request head is larger than {limits.client_header_max_size} bytes"), False
        return None, False
    lines = [line[:-1] if line.endswith(b"\r") else line for line in bytes(data[lead:end.start()]).split(b"\n")]
    try:
        length = check_request_head(lines, limits)
    except HeadRefused as refused:
        return refused, True
    limit = body_limit(client) if client is not None else 0
    if limit and length is not None and length > limit:
        return HeadRefused(413, f"the request body is larger than {limit} bytes"), True
    _pending_body_limit = limit
    return None, True


def _refuse(layer: Any, refused: HeadRefused) -> Any:
    layer.buf = ReceiveBuffer()  # let go of what the client sent
    layer.state = layer.done
    on_event("refused-head", layer.conn, f"{refused.status} {refused.reason}")
    yield commands.SendData(layer.conn, plain_response(refused.status, refused.reason))
    # FIN right after the answer, even while the client is still sending (a full close alone
    # was seen to leave such a socket open).
    yield commands.CloseTcpConnection(layer.conn, half_close=True)
    yield commands.CloseConnection(layer.conn)


# --- HTTP/1 -------------------------------------------------------------------------------

_original_read_headers = _http1.Http1Server.read_headers
_original_wait = _http1.Http1Server.wait
_original_make_body_reader = _http1.make_body_reader


def _read_headers(self: Any, event: Any) -> Any:
    global _reading_request_head, _pending_body_limit
    _pending_body_limit = 0
    if isinstance(event, events.DataReceived) and len(self.buf):
        on_event("head-bytes", self.conn, "")
        data = self.buf._data  # searched in place: no copy per arriving piece
        refused, complete = head_problem(data, _limits, self.conn, getattr(self, "gateway_scanned", 0))
        self.gateway_scanned = 0 if complete else max(0, len(data) - 3)
        if refused is not None:
            yield from _refuse(self, refused)
            return
    # Should this generator be left suspended, a back-end reader made meanwhile only gets the
    # line-length check and trailer dropping, both right for answers too, and no body limit.
    _reading_request_head = True
    try:
        yield from _original_read_headers(self, event)
    finally:
        _reading_request_head = False


def _wait(self: Any, event: Any) -> Any:
    if isinstance(event, events.DataReceived) and len(self.buf) > _limits.client_header_max_size:
        # A client pipelining without end while its answer is pending.
        self.buf = ReceiveBuffer()
        on_event("refused-head", self.conn, "431 too much data sent ahead of the answer")
        yield commands.CloseConnection(self.conn)
        return
    yield from _original_wait(self, event)


class _TrailerDroppingChunkedReader(ChunkedReader):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.received = 0

    def __call__(self, buf: ReceiveBuffer) -> Any:
        if (self._reading_trailer or self._bytes_in_chunk == 0) and not self._bytes_to_discard:
            self._check_line_length(buf)
        result = super().__call__(buf)
        if isinstance(result, h11.Data) and self.limit:
            self.received += len(result.data)
            if self.received > self.limit:
                raise h11.RemoteProtocolError(f"request body larger than {self.limit} bytes")
        if isinstance(result, h11.EndOfMessage) and result.headers:
            # Trailers are dropped: no back end of this kind expects them, and forwarding
            # fields that arrive after the checks would bypass them.
            return h11.EndOfMessage()
        return result


    def _check_line_length(self, buf: ReceiveBuffer) -> None:
        limit = _limits.client_header_max_size
        if len(buf) <= limit:
            return
        data = buf._data  # the bytearray itself: no copy of what may be a large buffer
        if self._reading_trailer:
            if _BLANK_LINE.search(data, 0, limit + 4) is None:
                raise h11.RemoteProtocolError("trailer section too large")
        elif data.find(b"\n", 0, limit) == -1:
            raise h11.RemoteProtocolError("chunk-size line too long")


# True only while Http1Server.read_headers runs: make_body_reader serves the back-end side
# (Http1Client) too, whose chunked answers keep mitmproxy's own reader.
_reading_request_head = False


def _make_body_reader(expected_size: int | None) -> Any:
    if expected_size is None and _reading_request_head:
        return _TrailerDroppingChunkedReader(_pending_body_limit)
    return _original_make_body_reader(expected_size)


# --- HTTP/2 -------------------------------------------------------------------------------

_original_h1_client_send = _http1.Http1Client.send


def _h1_client_send(self: Any, event: Any) -> Any:
    """An HTTP/2 request body goes to an HTTP/1 back end with HTTP/1 framing.

    HTTP/2 frames a body itself, so a client need not send Content-Length. mitmproxy turns such a
    request into an HTTP/1 head without Content-Length or Transfer-Encoding and writes the body
    after it: the back end reads the body as the next request on its connection (request
    smuggling past every check of the gateway). A body known whole gets its Content-Length, a
    streamed one chunked encoding, which mitmproxy then applies to every piece it sends."""
    if isinstance(event, _http_events.RequestHeaders) and not event.end_stream:
        request = event.request
        if (request.is_http2 or request.is_http3) and "content-length" not in request.headers \
                and "transfer-encoding" not in request.headers:
            if not request.stream and request.raw_content is not None:
                request.headers["content-length"] = str(len(request.raw_content))
            else:
                request.headers["transfer-encoding"] = "chunked"
    return _original_h1_client_send(self, event)


_original_h2_init = _http2.Http2Server.__init__
_original_h2_event = _http2.Http2Server.handle_h2_event


def _h2_init(self: Any, context: Any) -> None:
    _original_h2_init(self, context)
    # Set before the Start event sends our SETTINGS, and acknowledged at once as mitmproxy's
    # BufferedH2Connection does for its own values: in force from the first frame.
    settings = self.h2_conn.local_settings
    settings.max_concurrent_streams = _limits.http2_max_concurrent_streams
    settings.max_header_list_size = _limits.client_header_max_size
    settings.acknowledge()
    self.h2_conn.decoder.max_header_list_size = _limits.client_header_max_size
    self.gateway_resets = collections.deque()
    _h2_servers[context.client] = self


# The HTTP/2 layer of each client connection, for the back-pressure below and send_timeout.
_h2_servers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def h2_pending_bytes(client: Any) -> int:
    """Answer bytes mitmproxy holds for an HTTP/2 client because its flow-control window is shut."""
    layer = _h2_servers.get(client)
    if layer is None:
        return 0
    return sum(len(item.data) for queue in layer.h2_conn.stream_buffers.values() for item in queue)


_original_drain_writers = server.ConnectionHandler.drain_writers


async def _drain_writers(self: Any) -> None:
    """mitmproxy's back-pressure waits on socket buffers only; an HTTP/2 client that opens no
    flow-control window leaves them empty while mitmproxy queues whole answers in memory. So a
    back-end read loop of such a client also waits until that queue is below response_buffer."""
    await _original_drain_writers(self)
    if self.client not in _h2_servers:
        return
    client_io = self.transports.get(self.client)
    if client_io is None or asyncio.current_task() is client_io.handler:
        return  # the client's own read loop must go on: it brings the WINDOW_UPDATEs
    while self.client in self.transports and h2_pending_bytes(self.client) > _limits.response_buffer:
        await asyncio.sleep(0.05)


def _h2_event(self: Any, event: Any) -> Any:
    if isinstance(event, h2.events.StreamReset) and event.remote_reset:
        now = time.monotonic()
        resets = self.gateway_resets
        resets.append(now)
        while resets and resets[0] < now - RESET_WINDOW:
            resets.popleft()
        if len(resets) > _limits.http2_max_resets:
            on_event("http2-reset-flood", self.conn,
                     f"more than {_limits.http2_max_resets} stream resets in {RESET_WINDOW:.0f} s")
            self.h2_conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too many stream resets")
            yield commands.SendData(self.conn, self.h2_conn.data_to_send())
            # Ends every open stream with an error: their back-end requests are cancelled.
            yield from self.close_connection("too many stream resets")
            return True
    return (yield from _original_h2_event(self, event))


# --- sockets of cancelled connections ------------------------------------------------------

_original_handle_connection = server.ConnectionHandler.handle_connection


async def _handle_connection(self: Any, connection: Any) -> None:
    try:
        await _original_handle_connection(self, connection)
    except BaseException:
        # A connection closed by the gateway while the client was still sending (a refused
        # head) can be cancelled a second time before mitmproxy reaches writer.close(); its
        # socket then stayed open until garbage collection — a file-descriptor leak under attack.
        io = self.transports.pop(connection, None)
        if io is not None and io.writer is not None:
            try:
                io.writer.close()
            except OSError:
                pass
        raise


# --- installation ---------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Apply the patches once; raise if mitmproxy no longer has what they replace."""
    global _installed
    if _installed:
        return
    expected = {
        "Http1Server.read_headers": (_original_read_headers, ["self", "event"]),
        "Http1Server.wait": (_original_wait, ["self", "event"]),
        "make_body_reader": (_original_make_body_reader, ["expected_size"]),
        "Http2Server.__init__": (_original_h2_init, ["self", "context"]),
        "Http2Server.handle_h2_event": (_original_h2_event, ["self", "event"]),
        "ConnectionHandler.handle_connection": (_original_handle_connection, ["self", "connection"]),
        "ConnectionHandler.drain_writers": (_original_drain_writers, ["self"]),
        "Http1Client.send": (_original_h1_client_send, ["self", "event"]),
    }
    for name, (func, params) in expected.items():
        if list(inspect.signature(func).parameters) != params:
            raise RuntimeError(f"mitmproxy changed {name}; addons/_engine_patches.py must be updated")
    send_source = inspect.getsource(_original_h1_client_send)
    if "is_http2" not in send_source or '"chunked" in self.request.headers' not in send_source:
        raise RuntimeError("mitmproxy changed Http1Client.send; addons/_engine_patches.py must be updated")
    source = inspect.getsource(_original_read_headers)
    if "maybe_extract_lines" not in source or "make_body_reader" not in source:
        raise RuntimeError("mitmproxy changed Http1Server.read_headers; addons/_engine_patches.py must be updated")
    reader = ChunkedReader()
    if not all(hasattr(reader, name) for name in ("_reading_trailer", "_bytes_in_chunk", "_bytes_to_discard")) \
            or not isinstance(getattr(ReceiveBuffer(), "_data", None), bytearray):
        raise RuntimeError("h11 changed ChunkedReader; addons/_engine_patches.py must be updated")
    _http1.Http1Server.read_headers = _read_headers
    _http1.Http1Server.wait = _wait
    _http1.make_body_reader = _make_body_reader
    _http2.Http2Server.__init__ = _h2_init
    _http2.Http2Server.handle_h2_event = _h2_event
    server.ConnectionHandler.handle_connection = _handle_connection
    server.ConnectionHandler.drain_writers = _drain_writers
    _http1.Http1Client.send = _h1_client_send
    _installed = True
