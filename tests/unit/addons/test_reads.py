"""Read sizes on real sockets (addons/_reads.py): little until a request body is allowed."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from mitmproxy.test import tflow

from addons import _reads
from gateway.traffic.readsizes import READ_SIZES

BODY = 2 * 1024 * 1024


class FakeStream:
    """What _reads.follow looks at in mitmproxy's HttpStream: its flow, client and state."""

    def __init__(self, client: Any) -> None:
        self.flow = tflow.tflow()
        self.flow.response = None
        self.context = type("Context", (), {"client": client})()
        self.client_state = self.state_wait_for_request_headers

    def state_wait_for_request_headers(self, event: Any) -> None: ...

    def state_consume_request_body(self, event: Any) -> None: ...

    def state_stream_request_body(self, event: Any) -> None: ...

    def state_done(self, event: Any) -> None: ...


class Reader:
    _limit = READ_SIZES.reader_limit  # asyncio.StreamReader's, without an event loop


def send_in_thread(port: int, size: int) -> threading.Thread:
    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"x" * size)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


async def largest_reads(allow_body_after: int) -> tuple[int, int, list[tuple[int | None, int]]]:
    """Accept one connection as addons/_listen.py does and read it as mitmproxy does (64 KiB
    asked for each time); after `allow_body_after` bytes a request body is allowed. Returns the
    largest piece before and after that, and the read sizes and reader limits in force."""
    client = tflow.tclient_conn()
    stream = FakeStream(client)
    done: asyncio.Future[tuple[int, int, list[tuple[int | None, int]]]] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _reads.register(client, reader, writer)
        got, before, after, sizes = 0, 0, 0, [(_reads.read_size(client), reader._limit)]
        while got < BODY:
            await asyncio.sleep(0)  # let the socket fill the reader's buffer as far as it will
            piece = await reader.read(65535)
            if not piece:
                break
            got += len(piece)
            if got <= allow_body_after:
                before = max(before, len(piece))
            else:
                after = max(after, len(piece))
            if got > allow_body_after and stream.client_state == stream.state_wait_for_request_headers:
                stream.client_state = stream.state_stream_request_body
                _reads.follow(stream)
                sizes.append((_reads.read_size(client), reader._limit))
        stream.client_state = stream.state_done
        _reads.follow(stream)
        sizes.append((_reads.read_size(client), reader._limit))
        writer.close()
        done.set_result((before, after, sizes))

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        _reads.prepare(writer)
        return accept(reader, writer)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0, limit=READ_SIZES.reader_limit)
    sender = send_in_thread(server.sockets[0].getsockname()[1], BODY)
    try:
        return await asyncio.wait_for(done, 30)
    finally:
        server.close()
        await asyncio.to_thread(sender.join, 10)


def test_an_undecided_connection_never_hands_on_more_than_one_small_read() -> None:
    before, after, sizes = asyncio.run(largest_reads(allow_body_after=BODY // 2))
    # One recv of `undecided` and what the StreamReader held below twice its limit.
    assert 0 < before <= READ_SIZES.undecided + 2 * READ_SIZES.reader_limit, before
    # Once the body is allowed, reads grow back to mitmproxy's 64 KiB pieces ...
    assert READ_SIZES.undecided + 2 * READ_SIZES.reader_limit < after <= 65535
    # ... and fall back when no allowed body is left.
    small, large = (READ_SIZES.undecided, READ_SIZES.reader_limit), (READ_SIZES.body, READ_SIZES.body_reader_limit)
    assert sizes == [small, large, small]


def test_a_refused_request_never_raises_the_read_size() -> None:
    client = tflow.tclient_conn()
    stream = FakeStream(client)

    class Transport(asyncio.Transport):
        max_size = 256 * 1024

    writer = type("Writer", (), {"transport": Transport()})()
    _reads.register(client, Reader(), writer)  # type: ignore[arg-type]
    stream.flow.response = tflow.tresp()  # answered from its head (401)
    stream.client_state = stream.state_consume_request_body
    _reads.follow(stream)
    assert _reads.read_size(client) == READ_SIZES.undecided
    assert writer.transport.max_size == 256 * 1024  # never touched: it was never raised
    stream.flow.response = None
    _reads.follow(stream)
    assert writer.transport.max_size == READ_SIZES.body


def test_a_transport_without_max_size_is_left_alone() -> None:
    writer = type("Writer", (), {"transport": asyncio.Transport()})()
    _reads.prepare(writer)  # type: ignore[arg-type]
    assert not hasattr(writer.transport, "max_size")


def test_a_stream_before_its_request_head_keeps_the_small_reads() -> None:
    client = tflow.tclient_conn()
    stream = FakeStream(client)
    del stream.flow  # mitmproxy's HttpStream has no flow until its RequestHeaders
    writer = type("Writer", (), {"transport": asyncio.Transport()})()
    _reads.register(client, Reader(), writer)  # type: ignore[arg-type]
    _reads.follow(stream)
    assert _reads.read_size(client) == READ_SIZES.undecided
