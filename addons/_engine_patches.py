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
  is queued for the client. And a client's own reading pauses while more than
  ``HELD_BODY_BYTES`` of its request bodies wait for the hooks deciding on their heads (mitmproxy
  would queue all that arrives meanwhile).
* ``ConnectionHandler.handle_connection`` — a connection whose handler is cancelled before
  mitmproxy's own clean-up ran has its socket closed at once (else it leaks until GC). A client
  connection's reader is handed to addons/_reads.py, which reads 8 KiB at a time until a
  request body is allowed (``HttpStream._handle_event`` tells it after each event).
* ``Http1Client.send`` — an HTTP/2 request body without Content-Length reaches an HTTP/1 back
  end with Content-Length (known whole) or chunked encoding (streamed), never unframed, where the
  back end would read it as a second, unchecked request.
* ``Http2Server`` — advertises ``limits.http2_max_concurrent_streams`` and the head limit as
  SETTINGS, and answers more than ``limits.http2_max_resets`` client resets in 10 s with
  GOAWAY(ENHANCE_YOUR_CALM); closing the connection cancels every open stream, and with it
  its back-end request. This happens in the HTTP/2 layer, before any hook: a ``user_auth`` base
  is protected before credentials are even looked at. Resets also count per address across its
  connections (``reset_ledger``; addons/limits.py refuses a banned address's new connections,
  addons/reset_share.py adds the counts up over workers and machines through the store),
  and a stream the client reset before its request was sent on is never forwarded (mitmproxy
  dropped a reset that came in the same read as END_STREAM; ``HttpStream.make_server_connection``).

* ``HttpStream`` — request bodies (issue 24). A request an addon answered from its head (Auth,
  the policy, a limit) gets that answer at once and its body is never buffered: HTTP/1 closes
  the connection unless the body had already arrived, HTTP/2 resets the stream with NO_ERROR after
  the answer (``StopReading``, handled in ``Http1Server.send`` / ``Http2Connection._handle_event``).
  An HTTP/1 connection closed that way (or after a refused head) lingers: FIN after the answer,
  then what the client still sends is read and dropped for ≤ 2 s / 64 KiB before the close
  (``_close_lingering``, shared with the HTTP/2 GOAWAY), so a client still uploading reads its
  401 instead of a TCP reset.
  Bodies held in memory count against ``limits.request_buffer`` (per worker) and
  ``request_buffer_per_ip``; past either the body is streamed to the back end instead
  (``stream_hooks`` let an addon that wanted it whole tee it). ``client_max_body_size`` is
  counted on buffered and streamed bytes alike: 413 while the answer has not begun, and a
  streamed back-end request is broken off before its end. Request trailers are dropped (an
  HTTP/1 back end has no place for them; mitmproxy raised ``Unexpected event: RequestTrailers``).
  Each HTTP/2 stream's initial window is sized by ``request_buffer_per_ip`` (``h2_stream_window``).

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
from mitmproxy import flow as mitmproxy_flow
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import commands, events, server
from mitmproxy.proxy import layer as _layer
from mitmproxy.proxy.layers import http as _http_layer
from mitmproxy.proxy.layers.http import _events as _http_events
from mitmproxy.proxy.layers.http import _http1, _http2

from addons import _reads
from addons._guard import deny  # the one way addons answer
from gateway.traffic.limits import (RESET_ADDRESS_FACTOR, RESET_BAN, RESET_WINDOW, HeadRefused, LimitSettings,
                                    ResetLedger, check_request_head, head_lines)

_limits = LimitSettings()
# Set by addons/limits.py: called as on_event(kind, client, detail) for metrics and the log,
# and body_limit(client) → the request body limit of the client's base in bytes (0: none).
on_event: Callable[[str, Any, str], None] = lambda kind, client, detail: None
# Called with the flow when a body that was to be buffered is streamed after all (the memory
# budget was full): an addon that wanted the whole body (backups) sets a stream callable instead.
stream_hooks: list[Callable[[Any], None]] = []
# Engine-side counts for /metrics (read by addons/metrics.py).
counters: collections.Counter[str] = collections.Counter()
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
    lead = 0  # blank lines before a request are tolerated (RFC 9112 §2.2); a bare CR is not
    while lead < 64 and (data[lead:lead + 1] == b"\n" or data[lead:lead + 2] == b"\r\n"):
        lead += 1 if data[lead] == 0x0A else 2
    size = len(data) - lead
    line_end = data.find(b"\n", lead, lead + limits.request_line_max_size + 2)
    if line_end == -1 and size > limits.request_line_max_size:
        return HeadRefused(414, f"the request line is longer than {limits.request_line_max_size} bytes"), False
    end = _BLANK_LINE.search(data, max(lead, start), lead + limits.client_header_max_size + 4)
    if end is None:
        if size > limits.client_header_max_size:
            return HeadRefused(431, f"the request head is larger than {limits.client_header_max_size} bytes"), False
        return None, False
    try:
        length = check_request_head(head_lines(data[lead:end.end()]), limits)
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
    # was seen to leave such a socket open), and what the client still sends is drained a little
    # while so that it reads the answer.
    yield from _close_lingering(layer)


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
    # mitmproxy's 2^31-1 lets each stream upload as fast as it likes; a window sized by the body
    # budget keeps what one client has in flight to what the gateway will hold for it.
    settings.initial_window_size = h2_stream_window(_limits)
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
    client_io = self.transports.get(self.client)
    if client_io is not None and asyncio.current_task() is client_io.handler:
        # The client's own read loop: it pauses only while body bytes wait for a decision on
        # their request's head (an unauthenticated upload is answered, not read into memory).
        while self.client in self.transports and held_bytes(self.client) > HELD_BODY_BYTES:
            await asyncio.sleep(0.02)
        return  # otherwise it must go on: it brings the WINDOW_UPDATEs
    if self.client not in _h2_servers or client_io is None:
        return
    while self.client in self.transports and h2_pending_bytes(self.client) > _limits.response_buffer:
        await asyncio.sleep(0.05)


# Resets per address across connections (gateway.traffic.limits.ResetLedger); addons/limits.py
# refuses a banned address's new connections, addons/reset_share.py shares counts and bans
# with the other workers and machines through the store.
reset_ledger = ResetLedger()


def _h2_event(self: Any, event: Any) -> Any:
    if isinstance(event, h2.events.StreamReset) and event.remote_reset:
        now = time.monotonic()
        resets = self.gateway_resets
        resets.append(now)
        while resets and resets[0] < now - RESET_WINDOW:
            resets.popleft()
        address = self.conn.peername[0] if getattr(self.conn, "peername", None) else ""
        banned = reset_ledger.record(address, now, RESET_ADDRESS_FACTOR * _limits.http2_max_resets)
        if banned:
            on_event("reset-ban", self.conn,
                     f"more than {RESET_ADDRESS_FACTOR * _limits.http2_max_resets} stream resets in "
                     f"{RESET_WINDOW:.0f} s over its connections; new connections refused for {RESET_BAN:.0f} s")
        elif reset_ledger.banned_for(address, now):
            # Banned by another worker or machine (through the store): its connections here end too.
            banned = True
        if banned or len(resets) > _limits.http2_max_resets:
            on_event("http2-reset-flood", self.conn,
                     f"more than {_limits.http2_max_resets} stream resets in {RESET_WINDOW:.0f} s")
            self.h2_conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too many stream resets")
            yield commands.SendData(self.conn, self.h2_conn.data_to_send())
            yield from _h2_close_lingering(self, "too many stream resets")
            return True
        if event.stream_id not in self.streams:
            # mitmproxy forgets a stream once h2 calls it closed, and h2 does as soon as the
            # client's END_STREAM and RST_STREAM came in the same read: the reset was then
            # dropped and the request sent on all the same. Tell the stream (gone: ignored).
            yield _http_layer.ReceiveHttp(self.ReceiveProtocolError(
                event.stream_id, "stream reset by client", code=_http_layer.ErrorCode.CANCEL))
            return False  # go on with the connection's other events
    return (yield from _original_h2_event(self, event))


# A connection the gateway gives up on while the client may still be sending (an HTTP/2 flood
# after GOAWAY, an HTTP/1 request answered from its head) stays half-closed this long at most,
# dropping what comes in, before it is closed whatever the client does (nginx's lingering_close
# with lingering_time 30 s and no byte bound; shorter and bounded here, as the client may be an
# attacker: one connection costs at most these 2 s and never holds what it sends).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024


def _close_lingering(layer: Any, ending: Callable[[], Any] = lambda: iter(())) -> Any:
    """FIN, then read and drop until the client closes, LINGER_SECONDS pass or LINGER_BYTES came.

    A client still sending when the gateway ends its connection would otherwise not learn why:
    closing a socket with unread data makes the kernel answer with a TCP reset, which fails the
    client's next send, and a client may then never read the answer already on its way (the
    rapid-reset test lost its GOAWAY 1 run in 8; a TLS client of a server that closes without
    FIN read its 401 67 times in 100). After the FIN the client's sends go on succeeding for a
    while and it reads the answer and the end of the stream.
    ``ending`` runs between the FIN and the wait (HTTP/2 ends its streams there)."""
    if layer.conn.state & ConnectionState.CAN_WRITE:
        yield commands.CloseTcpConnection(layer.conn, half_close=True)
    yield from ending()
    if not layer.conn.state & ConnectionState.CAN_READ:
        yield commands.CloseConnection(layer.conn)  # the client has closed already: nothing to drain
        return
    lingering = _Lingering(layer)
    layer._handle_event = lingering.handle
    yield lingering.wakeup


class _Lingering:
    """The event handler of a half-closed connection: everything is dropped, nothing is kept."""

    __slots__ = ("conn", "wakeup", "dropped", "closed")

    def __init__(self, layer: Any) -> None:
        self.conn = layer.conn
        self.wakeup = commands.RequestWakeup(LINGER_SECONDS)
        self.dropped = 0
        self.closed = False

    def handle(self, event: Any) -> Any:
        if isinstance(event, events.DataReceived) and event.connection is self.conn:
            self.dropped += len(event.data)
            done = self.dropped > LINGER_BYTES
        else:
            # The client's close, the deadline, or the cancelled streams' answers (dropped: the
            # connection is over).
            done = ((isinstance(event, events.Wakeup) and event.command is self.wakeup)
                    or (isinstance(event, events.ConnectionClosed) and event.connection is self.conn))
        if done and not self.closed:
            self.closed = True
            yield commands.CloseConnection(self.conn)


def _h2_close_lingering(self: Any, reason: str) -> Any:
    """After GOAWAY: every open stream ends with an error (their back-end requests are cancelled)."""

    def end_streams() -> Any:
        for stream_id in self.streams:
            yield _http_layer.ReceiveHttp(self.ReceiveProtocolError(stream_id, reason, self.ReceiveProtocolError.code))
        self.streams.clear()

    yield from _close_lingering(self, end_streams)


# --- sockets of cancelled connections ------------------------------------------------------

_original_handle_connection = server.ConnectionHandler.handle_connection


async def _handle_connection(self: Any, connection: Any) -> None:
    if connection is self.client:
        io = self.transports.get(connection)
        if io is not None and isinstance(io.writer, asyncio.StreamWriter):
            _reads.register(connection, io.reader, io.writer)  # its read size follows its requests' bodies
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


# --- request bodies: answered from the head, a memory budget, the limit on streamed bodies ----
#
# mitmproxy reads a whole request body into memory even when an addon answered the request from
# its head (an unauthenticated upload is buffered before its 401 goes out), buffers every body
# below proxy.stream_threshold however many arrive at once, counts no streamed bytes against a
# limit, and has no place for HTTP/2 request trailers on an HTTP/1 back end.

class StopReading(_http_events.ResponseProtocolError):
    """Sent to the client side after a complete early answer: HTTP/2 resets the stream with
    NO_ERROR (RFC 9113 §8.1), HTTP/1 closes the connection, as the rest of the body is unread."""


# Bytes of request bodies held in memory, in this process and per client address.
buffered_total = 0
buffered_by_address: collections.Counter[str] = collections.Counter()


class _Charge:
    """What one stream's buffered body counts against the budgets; given back when it is
    forwarded, refused, streamed or the stream is gone (weakref.finalize, whatever the path)."""

    __slots__ = ("address", "amount", "__weakref__")

    def __init__(self, address: str) -> None:
        self.address = address
        self.amount = 0

    def set(self, amount: int) -> None:
        global buffered_total
        delta = amount - self.amount
        if not delta:
            return
        self.amount = amount
        buffered_total += delta
        left = buffered_by_address[self.address] + delta
        if left > 0:
            buffered_by_address[self.address] = left
        else:
            buffered_by_address.pop(self.address, None)


def _charge_of(stream: Any) -> _Charge:
    charge = stream.__dict__.get("gateway_charge")
    if charge is None:
        peer = stream.context.client.peername
        charge = _Charge(peer[0] if peer else "")
        stream.gateway_charge = charge
        weakref.finalize(stream, charge.set, 0)
    return charge


def budget_allows(charge: _Charge, more: int) -> bool:
    limits = _limits
    return (buffered_total + more <= limits.request_buffer
            and buffered_by_address[charge.address] + more <= limits.request_buffer_per_ip)


def h2_stream_window(limits: LimitSettings) -> int:
    """The initial flow-control window advertised per HTTP/2 stream: one address's request body
    budget shared by the streams it may open at once, never below HTTP/2's default."""
    return max(65535, min(2**31 - 1, limits.request_buffer_per_ip // limits.http2_max_concurrent_streams))


_HttpStream = _http_layer.HttpStream
_original_stream_event = _HttpStream._handle_event
_original_wait_for_request_headers = _HttpStream.state_wait_for_request_headers
_original_consume_request_body = _HttpStream.state_consume_request_body
_original_stream_request_body = _HttpStream.state_stream_request_body


# Body bytes that arrived while a stream waited for a hook (the decision on its head): mitmproxy
# queues them in memory, however many, while the connection goes on reading. Past this much per
# connection its reading pauses until the decision is made (see _drain_writers).
HELD_BODY_BYTES = 16 * 1024
_holding: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()
_original_stream_handle = _HttpStream.handle_event


def _stream_handle(self: Any, event: Any) -> Any:
    # A plain function returning mitmproxy's generator, not a generator around it: one frame
    # less for each of the ~20 events a request. Every caller iterates the result at once
    # (``yield from`` / ``for``), so the count below runs at the moment it ran before.
    if self._paused is not None and isinstance(event, _http_events.RequestData):
        self.gateway_held = self.__dict__.get("gateway_held", 0) + len(event.data)
        client = self.context.client
        streams = _holding.get(client)
        if streams is None:
            streams = _holding[client] = weakref.WeakSet()
        streams.add(self)
    return _original_stream_handle(self, event)


_original_make_server_connection = _HttpStream.make_server_connection


def _reset_by_client(stream: Any) -> bool:
    """Whether the client already reset this HTTP/2 stream: its RequestProtocolError waits in the
    stream's queue while the hooks (Auth, the policy) decide, and would only be handled after
    mitmproxy has sent the request on."""
    return bool(stream.flow is not None and stream.flow.request.is_http2 and any(
        isinstance(e, _http_events.RequestProtocolError) and e.stream_id == stream.stream_id
        for e in stream._paused_event_queue))


def _make_server_connection(self: Any) -> Any:
    """A stream the client reset before its request was sent on is never forwarded (issue 24
    point 5: 5,300 of 10,350 reset streams reached the back end)."""
    if _reset_by_client(self):
        # The queued reset is handled next, as mitmproxy would: error hook, stream dropped.
        return False
    return (yield from _original_make_server_connection(self))


def held_bytes(client: Any) -> int:
    """Body bytes of a client's streams queued while their heads were being decided."""
    streams = _holding.get(client)
    return sum(stream.gateway_held for stream in streams) if streams else 0


def _stream_event(self: Any, event: Any) -> Any:
    if isinstance(event, _http_events.RequestData) and self.__dict__.get("gateway_held"):
        self.gateway_held = max(0, self.gateway_held - len(event.data))
    yield from _original_stream_event(self, event)
    charge = self.__dict__.get("gateway_charge")
    if charge is not None:
        if self.client_state != self.state_consume_request_body and len(self.request_body_buf):
            self.request_body_buf.clear()  # refused or broken off: nothing will read it again
        charge.set(len(self.request_body_buf))
    _reads.follow(self)


def _wait_for_request_headers(self: Any, event: Any) -> Any:
    yield from _original_wait_for_request_headers(self, event)
    flow = self.flow
    if (not event.end_stream and flow is not None and flow.response is not None and flow.live
            and self.client_state == self.state_consume_request_body):
        yield from _answer_early(self)


def _answer_early(self: Any) -> Any:
    """Send the answer an addon set, now, without reading the request body first."""
    flow = self.flow
    flow.request.stream = False
    flow.response.timestamp_start = time.time()
    yield _http_layer.HttpResponseHeadersHook(flow)
    if (yield from self.check_killed(True)):
        return
    body_complete = any(isinstance(e, _http_events.RequestEndOfMessage) for e in self._paused_event_queue)
    self.request_body_buf.clear()
    self.client_state = self.state_done  # so send_response ends the flow
    yield from self.send_response()
    self.client_state = self.state_errored  # what is still on its way is dropped
    if not body_complete:
        yield _http_layer.SendHttp(StopReading(self.stream_id, "answered before the request body was read",
                                               _http_events.ErrorCode.CANCEL), self.context.client)


def _consume_request_body(self: Any, event: Any) -> Any:
    if isinstance(event, _http_events.RequestTrailers):
        return  # dropped, as for HTTP/1 chunked bodies: fields after the checks bypass them
    if isinstance(event, _http_events.RequestData) and self.flow.response is None:
        size = len(self.request_body_buf) + len(event.data)
        limit = body_limit(self.context.client)
        if limit and size > limit:
            self.request_body_buf.clear()
            yield from _too_large(self, limit)
            return
        if not budget_allows(_charge_of(self), len(event.data)):
            # Past the budget the body goes on to the back end as it arrives, read only as fast
            # as the back end takes it: never more memory.
            counters["request_buffer_full"] += 1
            body = bytes(self.request_body_buf) + event.data
            self.request_body_buf.clear()
            self.gateway_charge.set(0)
            self.flow.request.stream = True
            for hook in stream_hooks:
                hook(self.flow)
            yield from self.start_request_stream()
            if self.client_state == self.state_stream_request_body:
                yield from self.client_state(_http_events.RequestData(self.stream_id, body))
            return
    yield from _original_consume_request_body(self, event)


def _stream_request_body(self: Any, event: Any) -> Any:
    if isinstance(event, _http_events.RequestTrailers):
        return
    if isinstance(event, _http_events.RequestData):
        self.gateway_streamed = self.__dict__.get("gateway_streamed", 0) + len(event.data)
        limit = body_limit(self.context.client)
        if limit and self.gateway_streamed > limit:
            yield from _cut_streamed(self, limit)
            return
    yield from _original_stream_request_body(self, event)


def _too_large(self: Any, limit: int) -> Any:
    self.flow.metadata["gateway_verdict"] = "denied-limit"
    self.flow.metadata["gateway_reason"] = "request body too large"
    deny(self.flow, 413, f"413 Content Too Large: the request body is larger than {limit} bytes.")
    on_event("body-too-large", self.context.client, f"413 request body larger than {limit} bytes")
    yield from _answer_early(self)


def _cut_streamed(self: Any, limit: int) -> Any:
    """A streamed body past the limit: the back end's request is broken off (an HTTP/1 back end
    sees its connection close before the body's end, so it never acts on a truncated request),
    the client gets 413 if its answer has not begun, else its stream is reset."""
    message = f"request body larger than {limit} bytes"
    on_event("body-too-large", self.context.client, f"413 {message}")
    self.flow.metadata["gateway_verdict"] = "denied-limit"
    self.flow.metadata["gateway_reason"] = "request body too large"
    self.flow.error = mitmproxy_flow.Error(message)
    self.client_state = self.server_state = self.state_errored
    self.flow.live = False
    code = _http_events.ErrorCode.REQUEST_TOO_LARGE
    yield _http_layer.SendHttp(_http_events.RequestProtocolError(self.stream_id, message, code), self.context.server)
    yield _http_layer.HttpErrorHook(self.flow)
    yield _http_layer.SendHttp(_http_events.ResponseProtocolError(self.stream_id, message, code), self.context.client)
    yield _http_layer.SendHttp(StopReading(self.stream_id, message, _http_events.ErrorCode.CANCEL), self.context.client)
    yield _http_layer.DropStream(self.stream_id)


_original_h1_server_send = _http1.Http1Server.send
# On the base class: addons/errorpages.py wraps Http2Server._handle_event itself, and both
# wrappers must hold whatever the import order.
_original_h2_connection_handle = _http2.Http2Connection._handle_event


def _h1_server_send(self: Any, event: Any) -> Any:
    if isinstance(event, StopReading):
        self.buf = ReceiveBuffer()
        self.state = self.done
        yield from _close_lingering(self)
        return
    yield from _original_h1_server_send(self, event)


def _h2_connection_handle(self: Any, event: Any) -> Any:
    if isinstance(event, StopReading):
        if not self.is_closed(event.stream_id):
            self.h2_conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.NO_ERROR)
            yield commands.SendData(self.conn, self.h2_conn.data_to_send())
        return
    yield from _original_h2_connection_handle(self, event)


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
        "Http1Server.send": (_original_h1_server_send, ["self", "event"]),
        "Http2Connection._handle_event": (_original_h2_connection_handle, ["self", "event"]),
        "HttpStream._handle_event": (_original_stream_event, ["self", "event"]),
        "HttpStream.handle_event": (_original_stream_handle, ["self", "event"]),
        "HttpStream.state_wait_for_request_headers": (_original_wait_for_request_headers, ["self", "event"]),
        "HttpStream.state_consume_request_body": (_original_consume_request_body, ["self", "event"]),
        "HttpStream.state_stream_request_body": (_original_stream_request_body, ["self", "event"]),
        "HttpStream.start_request_stream": (_HttpStream.start_request_stream, ["self"]),
        "HttpStream.send_response": (_HttpStream.send_response, ["self", "already_streamed"]),
        "HttpStream.check_killed": (_HttpStream.check_killed, ["self", "emit_error_hook"]),
        "HttpStream.make_server_connection": (_original_make_server_connection, ["self"]),
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
    stream_source = inspect.getsource(_HttpStream)
    if "request_body_buf" not in stream_source or "self._paused_event_queue" not in stream_source \
            or "self._paused = " not in inspect.getsource(_layer.Layer) \
            or not hasattr(_http_layer, "DropStream"):
        raise RuntimeError("mitmproxy changed HttpStream; addons/_engine_patches.py must be updated")
    _http1.Http1Server.send = _h1_server_send
    _http2.Http2Connection._handle_event = _h2_connection_handle
    _HttpStream._handle_event = _stream_event
    _HttpStream.handle_event = _stream_handle
    _HttpStream.state_wait_for_request_headers = _wait_for_request_headers
    _HttpStream.state_consume_request_body = _consume_request_body
    _HttpStream.state_stream_request_body = _stream_request_body
    _HttpStream.make_server_connection = _make_server_connection
    _installed = True
