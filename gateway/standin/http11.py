"""A small HTTP/1.1 server-side protocol over asyncio streams: just what the stand-in needs.

It parses one request head, hands the body out as a stream of pieces (Content-Length or
chunked), and writes a response whose body may be bytes or a stream of pieces (sent with
Content-Length when the size is known, chunked otherwise). Bodies are never collected here:
the stand-in receives 20+ MiB uploads and sends multi-MB lists, so memory stays bounded by
PIECE_SIZE whatever the body size.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

# Same order of size as nginx's large_client_header_buffers (4 x 8 KiB) and node.js (16 KiB),
# doubled so the gateway's added headers never push a real client over the edge.
MAX_HEAD_SIZE = 64 * 1024
# Bodies travel in pieces of this size: big enough for throughput, small enough for memory.
PIECE_SIZE = 64 * 1024

Body = bytes | Iterable[bytes] | AsyncIterable[bytes]


class HttpError(Exception):
    """A request the stand-in refuses; status is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class BodyError(ConnectionError):
    """The client broke the body framing or went away mid-body: the connection cannot go on."""


def decode_header_text(raw: bytes) -> str:
    # mitmproxy sends str header values as UTF-8 (Cyrillic user names in identity headers);
    # anything that is not valid UTF-8 is shown byte for byte as ISO-8859-1, as RFC 9110 allows.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: str  # "1.0" or "1.1"
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """All values of one header joined by ", " (RFC 9110 5.3), or None when absent."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key.lower() == wanted]
        return ", ".join(values) if values else None

    @property
    def raw_path(self) -> str:
        """The path as received, still percent-encoded, without the query."""
        if self.target.startswith(("http://", "https://")):  # absolute-form, RFC 9112 3.2.2
            return urlsplit(self.target).path or "/"
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in (self.header("connection") or "").split(",")}
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def parse_head(data: bytes) -> RequestHead:
    """Parse a request head (everything up to and including the blank line)."""
    lines = data.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, "malformed request line")
    method, target, version = (part.decode("latin-1") for part in parts)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"HTTP version {version!r} is not supported; use HTTP/1.1")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete header line folding is not accepted (RFC 9112 5.2)")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        headers.append((name.decode("latin-1"), decode_header_text(value.strip(b" \t"))))
    return RequestHead(method, target, version.removeprefix("HTTP/"), headers)


async def read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    """The next request head, or None when the client closed the connection between requests."""
    while True:
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial.strip(b"\r\n"):
                raise BodyError("connection closed inside a request head") from error
            return None
        except asyncio.LimitOverrunError as error:
            raise HttpError(431, f"request head larger than {MAX_HEAD_SIZE} bytes") from error
        # RFC 9112 2.2: a server should ignore empty lines received before a request line.
        data = data.lstrip(b"\r\n")
        if data:
            return parse_head(data)


class BodyReader:
    """The request body as an async stream of pieces; framing per RFC 9112 section 6."""

    def __init__(self, reader: asyncio.StreamReader, head: RequestHead) -> None:
        self._reader = reader
        self.chunked = False
        self.length: int | None = 0
        self.finished = False
        self._started = False
        transfer_encoding = head.header("transfer-encoding")
        content_lengths = {value.strip() for key, value in head.headers if key.lower() == "content-length"}
        if transfer_encoding is not None:
            # Both framings at once is the classic request-smuggling shape: refuse, don't guess.
            if content_lengths:
                raise HttpError(400, "both Transfer-Encoding and Content-Length are present")
            if head.version == "1.0" or transfer_encoding.strip().lower() != "chunked":
                raise HttpError(501, f"Transfer-Encoding {transfer_encoding!r} is not supported")
            self.chunked, self.length = True, None
        elif content_lengths:
            if len(content_lengths) > 1 or not next(iter(content_lengths)).isdigit():
                raise HttpError(400, "invalid Content-Length")
            self.length = int(next(iter(content_lengths)))
        self.finished = self.length == 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("the request body can be read only once")
        self._started = True
        return self._chunked_pieces() if self.chunked else self._sized_pieces()

    async def read_all(self, limit: int) -> bytes:
        """The whole body, refusing with 413 past limit bytes (for JSON the stand-in parses)."""
        pieces: list[bytes] = []
        size = 0
        async for piece in self:
            size += len(piece)
            if size > limit:
                raise HttpError(413, f"request body larger than {limit} bytes")
            pieces.append(piece)
        return b"".join(pieces)

    async def drain(self) -> None:
        """Read and drop what the handler left unread, so the connection can serve the next request."""
        if self.finished:
            return
        if not self._started:
            async for _ in self:
                pass
        else:
            raise BodyError("handler stopped reading the body part way")

    async def _sized_pieces(self) -> AsyncIterator[bytes]:
        remaining = self.length or 0
        while remaining:
            piece = await self._reader.read(min(remaining, PIECE_SIZE))
            if not piece:
                raise BodyError("connection closed inside the request body")
            remaining -= len(piece)
            yield piece
        self.finished = True

    async def _chunked_pieces(self) -> AsyncIterator[bytes]:
        while True:
            size = _chunk_size(await self._read_line())
            if size == 0:
                while await self._read_line() not in (b"\r\n", b"\n"):
                    pass  # trailer fields: nothing here needs them
                self.finished = True
                return
            remaining = size
            while remaining:
                piece = await self._reader.read(min(remaining, PIECE_SIZE))
                if not piece:
                    raise BodyError("connection closed inside a body chunk")
                remaining -= len(piece)
                yield piece
            if await self._read_line() not in (b"\r\n", b"\n"):
                raise BodyError("chunk data is not followed by CRLF")

    async def _read_line(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError as error:  # the stream's limit was exceeded
            raise BodyError("chunk size line too long") from error
        if not line.endswith(b"\n"):
            raise BodyError("connection closed inside the chunked framing")
        return line


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
        raise BodyError(f"invalid chunk size {text[:20]!r}")
    return int(text, 16)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""
    # For a streamed body whose size is known up front: sent as Content-Length instead of chunked.
    content_length: int | None = None


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _has_no_body(status: int) -> bool:
    return status < 200 or status in (204, 304)


async def write_response(
    writer: asyncio.StreamWriter, response: Response, *, version: str, head_only: bool, keep_alive: bool
) -> tuple[bool, int]:
    """Send a response; returns (connection may be kept, body bytes sent)."""
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    headers = [("Date", http_date()), ("Server", "gateway-standin"), *response.headers]
    body = response.body
    chunked = False
    if _has_no_body(response.status):
        body = b""
    elif isinstance(body, bytes):
        headers.append(("Content-Length", str(len(body))))
    elif response.content_length is not None:
        headers.append(("Content-Length", str(response.content_length)))
    elif version == "1.1":
        headers.append(("Transfer-Encoding", "chunked"))
        chunked = True
    else:
        keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
    if not keep_alive:
        headers.append(("Connection", "close"))
    elif version == "1.0":
        headers.append(("Connection", "keep-alive"))
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    head_bytes = head.encode("latin-1")
    if head_only or (isinstance(body, bytes) and not body):
        writer.write(head_bytes)
        await writer.drain()
        return keep_alive, 0
    if isinstance(body, bytes):
        writer.write(head_bytes + body)
        await writer.drain()
        return keep_alive, len(body)
    writer.write(head_bytes)
    sent = 0
    async for piece in _pieces(body):
        if not piece:
            continue
        sent += len(piece)
        if chunked:
            writer.write(b"%x\r\n" % len(piece))
            writer.write(piece)
            writer.write(b"\r\n")
        else:
            writer.write(piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    if response.content_length is not None and sent != response.content_length:
        return False, sent  # the promised length was not met: the framing is broken, close
    return keep_alive, sent


async def _pieces(body: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(body, AsyncIterable):
        async for piece in body:
            yield piece
    else:
        for piece in body:
            yield piece


@dataclass
class Request:
    """One received request as handlers see it."""

    head: RequestHead
    body: BodyReader
    local_port: int
    peer: str

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def raw_path(self) -> str:
        return self.head.raw_path

    @property
    def query(self) -> str:
        return self.head.query

    @property
    def segments(self) -> list[str]:
        """Decoded path segments; %2F inside a segment stays inside it."""
        return [unquote(part, errors="replace") for part in self.raw_path.split("/") if part]

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return self.head.header(name)
