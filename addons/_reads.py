"""The read sizes of gateway/traffic/readsizes.py, applied to mitmproxy's client sockets.

mitmproxy reads a connection with ``reader.read(65535)`` from the StreamReader asyncio made for
it. What that pulls into the process is decided below it: the transport's ``max_size`` (the size
of each ``recv``, 256 KiB) and the StreamReader's limit (asyncio stops reading the socket past
twice it). Neither is reachable through mitmproxy's options, so:

* ``READ_SIZES.reader_limit`` is passed to ``asyncio.start_server`` by addons/_listen.py, and
  ``prepare(writer)`` sets the first reads to ``undecided`` before the connection's first read;
* ``register(client, writer)`` (addons/_engine_patches.py, when mitmproxy starts reading a
  client) ties mitmproxy's ``Client`` to its transport;
* ``follow(stream)`` (after each event of a request's HttpStream) raises the connection's reads
  and its StreamReader's limit to asyncio's own while a request body the gateway accepted is
  being read, and lowers them again when no such body is left — a refused request, answered
  from its head, never raises them.

A transport without ``max_size`` (another event loop) keeps its own reads; the StreamReader's
limit still holds there.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from gateway.traffic.readsizes import READ_SIZES


class _Reads:
    """One client connection: its reader, transport and the streams whose bodies it is reading."""

    __slots__ = ("reader", "transport", "bodies", "size")

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self.reader = reader
        self.transport = transport
        self.bodies: weakref.WeakSet[Any] = weakref.WeakSet()
        self.size = READ_SIZES.undecided


_connections: weakref.WeakKeyDictionary[Any, _Reads] = weakref.WeakKeyDictionary()


def _set_size(transport: asyncio.BaseTransport, size: int) -> None:
    # Only where asyncio's own transports read by it (selector and proactor alike): an attribute
    # set on any other transport would do nothing and hide that.
    if isinstance(getattr(type(transport), "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]


def prepare(writer: asyncio.StreamWriter) -> None:
    """A newly accepted connection reads ``undecided`` bytes at a time from its first read on."""
    _set_size(writer.transport, READ_SIZES.undecided)


def register(client: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _connections[client] = _Reads(reader, writer.transport)


def _set_limit(reader: asyncio.StreamReader, limit: int) -> None:
    # The limit is fixed at construction in asyncio's API; its attribute has kept this name
    # since Python 3.4. Without it the small limit stays: slower uploads, never more memory.
    if isinstance(getattr(reader, "_limit", None), int):
        reader._limit = limit


def _reading_allowed_body(stream: Any) -> bool:
    flow = stream.__dict__.get("flow")  # set when the stream's request head arrives
    return (flow is not None and flow.response is None and flow.live
            and stream.client_state in (stream.state_consume_request_body, stream.state_stream_request_body))


def follow(stream: Any) -> None:
    """Called after each event a request's stream handled: adjust its connection's read size."""
    reads = _connections.get(stream.context.client)
    if reads is None:
        return
    if _reading_allowed_body(stream):
        reads.bodies.add(stream)
    else:
        reads.bodies.discard(stream)
    bodies = len(reads.bodies)
    size = READ_SIZES.size(bodies)
    if size != reads.size:
        reads.size = size
        _set_limit(reads.reader, READ_SIZES.limit(bodies))
        _set_size(reads.transport, size)


def read_size(client: Any) -> int | None:
    """The read size in force for a client connection (None: not one of ours), for tests."""
    reads = _connections.get(client)
    return reads.size if reads is not None else None
