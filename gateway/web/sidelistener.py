"""A small plain-HTTP listener on its own socket, for the admin and enrolment pages.

Never a mitmproxy listener, so nothing that arrives there can reach a back end. The socket is
bound when the configuration is applied — a busy port refuses that configuration — and served
once the event loop runs; a changed host or port moves it. Requests are one per connection:
the request line and headers are read (bounded in size and time), then a body of at most
``max_body`` bytes when the listener accepts one (the console's forms), the page answers, and
the connection closes. With an ``ssl.SSLContext`` the listener speaks TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable

# A request line and a few headers; anything bigger is not a browser or a metrics scraper.
MAX_REQUEST_BYTES = 8 * 1024
READ_TIMEOUT = 10.0
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True)
class SideRequest:
    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    peer: str = ""  # the client's address
    body: bytes = b""
    tls: bool = False  # served over TLS
    version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


Handler = Callable[[SideRequest], Awaitable[bytes]]


def parse_head(head: bytes) -> SideRequest | None:
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if sep:
            headers[key.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return SideRequest(parts[0], parts[1], headers, version=parts[2])


class SideListener:
    def __init__(self, config_key: str, handler: Handler, max_body: int = 0) -> None:
        self._config_key = config_key  # named in errors: "admin.listen: cannot listen on …"
        self._handler = handler
        self._max_body = max_body
        self._ssl: ssl.SSLContext | None = None
        self._where: Address | None = None
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None

    @property
    def where(self) -> Address | None:
        return self._where

    @property
    def port(self) -> int | None:
        """The bound port (useful when the configuration says 0)."""
        return int(self._socket.getsockname()[1]) if self._socket is not None else None

    def move(self, where: Address | None, tls: ssl.SSLContext | None = None) -> bool:
        """Listen at ``where`` (None: nowhere), over TLS with ``tls``. Raises OSError naming the key
        when it cannot.

        Returns whether anything changed.
        """
        if where == self._where and tls is self._ssl:
            return False
        moved = where != self._where
        new_socket = self._bind(where) if where is not None and moved else None
        if not moved and where is not None and self._socket is not None:
            # Same address, another TLS context: keep the socket, restart the server on it.
            new_socket = self._socket.dup()
        self.stop()
        self._where, self._socket, self._ssl = where, new_socket, tls
        self._start_if_loop()
        return True

    def running(self) -> None:
        self._start_if_loop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._socket is not None:
            self._socket.close()
        self._server, self._socket = None, None

    def _bind(self, where: Address) -> socket.socket:
        family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
        try:
            sock = socket.create_server((where.host, where.port), family=family)
        except OSError as e:
            raise OSError(f"{self._config_key}: cannot listen on {where.host}:{where.port} ({e.strerror}); "
                          f"choose another port ({self._config_key}) or stop the program using it") from None
        sock.setblocking(False)
        return sock

    def _start_if_loop(self) -> None:
        if self._socket is None or self._server is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started from `running` once the loop is up
        sock = self._socket

        async def start() -> None:
            if self._socket is not sock or self._server is not None:
                return  # moved, stopped or already started meanwhile
            server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_REQUEST_BYTES, ssl=self._ssl,
                                                ssl_handshake_timeout=READ_TIMEOUT if self._ssl else None)
            if self._socket is sock and self._server is None:
                self._server = server
            else:
                server.close()

        loop.create_task(start())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            request = parse_head(head[:-4])
            if request is not None:
                peer = writer.get_extra_info("peername")
                body = await self._read_body(reader, request)
                if body is None:
                    writer.write(TOO_LARGE)
                    await writer.drain()
                    return
                request = dataclasses.replace(request, peer=str(peer[0]) if isinstance(peer, tuple) and peer else "",
                                              body=body, tls=self._ssl is not None)
            writer.write(BAD_REQUEST if request is None else await self._handler(request))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
                ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader, request: SideRequest) -> bytes | None:
        """The body announced by Content-Length (b"" when there is none); None when too large."""
        length_text = request.headers.get("content-length", "").strip()
        if not length_text or request.method in ("GET", "HEAD"):
            return b""
        if not length_text.isdigit():
            raise asyncio.IncompleteReadError(b"", None)  # not a length: answered by closing
        length = int(length_text)
        if length > self._max_body:
            return None if self._max_body else b""
        return await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT) if length else b""
