"""The optional enrolment listener: plain HTTP on its own port, serving only the local CA
certificate and a page with its fingerprint, so devices can be set up to trust the gateway.

Not a mitmproxy listener: it must never reach a back end. The port is bound in
``apply_config`` (a busy port refuses the configuration); serving starts on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from gateway.certs.enrolment import EnrolmentContent, answer, encode
from gateway.certs.inspect import load_local_ca
from gateway.config import GatewayConfig

logger = logging.getLogger("gateway.enrolment")

# A request line and a few headers; anything bigger is not a browser fetching a certificate.
MAX_REQUEST_BYTES = 8 * 1024
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Where:
    host: str
    port: int


class Enrolment:
    def __init__(self) -> None:
        self._where: _Where | None = None
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._content: EnrolmentContent | None = None
        self._starting: socket.socket | None = None
        self._start_task: asyncio.Task[None] | None = None

    def apply_config(self, cfg: GatewayConfig) -> None:
        ca = load_local_ca(cfg)
        content = EnrolmentContent.for_ca(ca) if ca is not None else None
        wanted = _Where(cfg.enrolment.host, cfg.enrolment.listen) if cfg.enrolment.enabled else None
        if wanted == self._where:
            self._content = content
            return
        new_socket = _bind(wanted) if wanted is not None else None  # raises: config refused
        self._stop()
        self._where, self._socket, self._content = wanted, new_socket, content
        if wanted is not None:
            logger.info("enrolment page on http://%s:%d/ (CA certificate only)", wanted.host, wanted.port)
            self._start_if_loop()

    def running(self) -> None:
        self._start_if_loop()

    def done(self) -> None:
        self._stop()

    @property
    def port(self) -> int | None:
        """The bound port (useful when the config says 0)."""
        if self._socket is None:
            return None
        return int(self._socket.getsockname()[1])

    def _start_if_loop(self) -> None:
        if self._socket is None or self._server is not None or self._starting is self._socket:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started from `running` once the loop is up
        sock = self._socket
        self._starting = sock

        async def start() -> None:
            if self._socket is not sock:
                return  # stopped or moved before the loop got here
            server = await asyncio.start_server(self._handle, sock=sock, limit=MAX_REQUEST_BYTES)
            if self._socket is sock:
                self._server = server
            else:  # the configuration moved the listener meanwhile
                server.close()
        self._start_task = loop.create_task(start())

    def _stop(self) -> None:
        if isinstance(self._server, asyncio.Server):
            self._server.close()
        elif self._socket is not None:
            self._socket.close()
        self._server, self._socket = None, None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) != 3:
                writer.write(encode(answer("BAD", "/", None)))
                return
            method, path, _ = parts
            host = _header(head, b"host")
            writer.write(encode(answer(method, path, self._content, host), head_only=method == "HEAD"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def _bind(where: _Where) -> socket.socket:
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    try:
        sock = socket.create_server((where.host, where.port), family=family)
    except OSError as e:
        raise OSError(f"enrolment.listen: cannot listen on {where.host}:{where.port} ({e.strerror}); "
                      "choose another port or stop the program using it") from None
    sock.setblocking(False)
    return sock


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None
