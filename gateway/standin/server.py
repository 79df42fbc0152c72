"""The stand-in's listeners: a data port (OData API + test endpoints) and an optional print port.

One asyncio task per connection, requests served in order on it (keep-alive, pipelining).
The access log has one line per request and never the query string: the session endpoint
carries a password there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from gateway.standin.api import ODataApi, split_api_path
from gateway.standin.http11 import (
    MAX_HEAD_SIZE,
    PIECE_SIZE,
    BodyError,
    BodyReader,
    HttpError,
    Request,
    Response,
    read_head,
    write_response,
)
from gateway.standin.responses import error_response
from gateway.standin.tools import PrintService, tool_route

logger = logging.getLogger("gateway.standin")

# nginx's keepalive_timeout is 75 s; an idle client past that is let go.
IDLE_TIMEOUT = 75.0
# nginx's lingering_time is 30 s; an error answer only needs to outlive the client's send.
LINGER_SECONDS = 2.0

App = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Ports:
    data: int
    print: int | None


def data_app(api: ODataApi) -> App:
    async def app(request: Request) -> Response:
        answer = await tool_route(request)
        if answer is not None:
            return answer
        located = split_api_path(request.segments)
        if located is not None:
            return await api.handle(request, *located)
        raise HttpError(404, f"no such resource: {request.raw_path}; the API is under /api/v1/")
    return app


def print_app(service: PrintService) -> App:
    async def app(request: Request) -> Response:
        answer = await service.handle(request) or await tool_route(request)
        if answer is not None:
            return answer
        raise HttpError(404, f"no such resource: {request.raw_path}; the print port has /print and /status")
    return app


class StandinServer:
    """Running listeners; close() stops them and drops open connections."""

    def __init__(self, access_log: bool) -> None:
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._access_log = access_log
        self.ports = Ports(0, None)

    async def listen(self, host: str, data_port: int, print_port: int | None) -> None:
        data_server = await self._start(host, data_port, "data", data_app(ODataApi()))
        actual_print: int | None = None
        if print_port is not None:
            try:
                print_server = await self._start(host, print_port, "print", print_app(PrintService()))
            except OSError:
                await self.close()
                raise
            actual_print = print_server.sockets[0].getsockname()[1]
        self.ports = Ports(data_server.sockets[0].getsockname()[1], actual_print)

    @property
    def data_port(self) -> int:
        return self.ports.data

    @property
    def print_port(self) -> int | None:
        return self.ports.print

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._connections):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def _start(self, host: str, port: int, role: str, app: App) -> asyncio.Server:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_connection(reader, writer, role, app)

        server = await asyncio.start_server(on_connection, host, port, limit=MAX_HEAD_SIZE)
        self._servers.append(server)
        return server

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, role: str, app: App
    ) -> None:
        self._connections.add(writer)
        peer_address = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{peer_address[0]}:{peer_address[1]}"
        local_port = writer.get_extra_info("sockname")[1]
        linger = False
        try:
            keep_alive = True
            while keep_alive:
                keep_alive, linger = await self._serve_one(reader, writer, role, app, peer, local_port)
        except (ConnectionError, TimeoutError) as error:
            logger.debug("standin %s %s: connection ended: %s", role, peer, error)
            linger = isinstance(error, BodyError)
        except Exception:
            logger.exception("standin %s %s: connection failed", role, peer)
        finally:
            if linger:
                await _lingering_close(reader, writer)
            self._connections.discard(writer)
            writer.close()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        role: str, app: App, peer: str, local_port: int,
    ) -> tuple[bool, bool]:
        """Serve one request; returns (keep the connection, unread input may remain)."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                head = await read_head(reader)
        except HttpError as error:
            writer.write(_plain_error(error))
            await writer.drain()
            return False, True
        if head is None:
            return False, False
        started = time.perf_counter()
        request: Request | None = None
        try:
            request = Request(head, BodyReader(reader, head), local_port, peer)
            response = await app(request)
        except HttpError as error:
            response = error_response(error.status, error.message, error.headers)
        except BodyError:
            raise
        except Exception:
            logger.exception("standin %s: handler failed for %s %s", role, head.method, head.raw_path)
            response = error_response(500, "the stand-in failed on this request; see its log")
        # A body the handler did not read (an error, a 404 to a POST) is drained so the next
        # request on the connection starts at a request line; a broken one closes the connection.
        body_ok = request is not None and (request.body.finished or response.status < 500)
        if request is not None and not request.body.finished and body_ok:
            try:
                await request.body.drain()
            except BodyError:
                body_ok = False
        keep_alive, sent = await write_response(
            writer, response, version=head.version, head_only=head.method == "HEAD",
            keep_alive=head.keep_alive and body_ok,
        )
        if self._access_log:
            # raw_path only: the query may hold credentials (session?username=..&password=..).
            logger.info('%s %s "%s %s HTTP/%s" %d %d %.1fms', role, peer, head.method, head.raw_path,
                        head.version, response.status, sent, (time.perf_counter() - started) * 1000)
        return keep_alive, not body_ok


async def _lingering_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Closing a socket with unread input makes the kernel send RST, which can destroy the error
    # response before the client reads it. Like nginx's lingering_close: send FIN, then read and
    # drop what is still coming for a short while.
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(PIECE_SIZE):
                pass
    except (ConnectionError, TimeoutError, OSError):
        pass


def _plain_error(error: HttpError) -> bytes:
    body = f"{error.message}\n".encode()
    return (f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


async def serve(host: str, data_port: int, print_port: int | None, *, access_log: bool = True) -> StandinServer:
    """Start the stand-in. Port 0 picks a free port (see .ports); print_port None: no print port."""
    server = StandinServer(access_log)
    await server.listen(host, data_port, print_port)
    return server
