"""gzip for bases with ``compress: true`` (the seed's "Сжимать справочники и таблицы").

Off by default: the seed warns that unpacking is slow on many terminals. When on, a response is
compressed if the client accepts gzip, the back end did not compress it already, and it is at
least MIN_SIZE bytes (or of unknown length). A buffered body is compressed whole; a streamed
one (large product lists) chunk by chunk as it passes, without holding it.
"""

from __future__ import annotations

import zlib

from mitmproxy import http

from addons._context import listener_of

# Below about 1 KiB gzip's header and the terminal's unpacking cost more than they save.
MIN_SIZE = 1024
# zlib's default: most of the gain of level 9 for a fraction of the CPU.
LEVEL = 6
GZIP_WBITS = 16 + zlib.MAX_WBITS
PENDING_KEY = "gateway_compress_pending"
# Already-compressed media gain nothing.
SKIP_TYPES = ("image/", "video/", "audio/", "application/zip", "application/gzip", "application/x-gzip",
              "application/x-7z", "application/x-rar", "application/pdf", "font/woff")


def accepts_gzip(accept_encoding: str) -> bool:
    """RFC 9110 12.5.3: gzip (or x-gzip, or *) with a q-value above zero."""
    chosen: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            chosen[name.strip().lower()] = q
    for name in ("gzip", "x-gzip"):
        if name in chosen:
            return chosen[name] > 0
    return chosen.get("*", 0.0) > 0


class GzipStream:
    """A stream callable: raw chunks in, gzip chunks out; b"" (mitmproxy's end marker) finishes."""

    def __init__(self, level: int = LEVEL) -> None:
        self._zip = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        self._finished = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self._finished:
            return [chunk] if chunk else []
        if chunk:
            out = self._zip.compress(chunk)
        else:
            out = self._zip.flush()
            self._finished = True
        # A list, never a bare b"": an empty chunk would end an HTTP/1.1 chunked body early.
        return [out] if out else []


def compressible(flow: http.HTTPFlow) -> bool:
    response = flow.response
    if response is None or flow.request.method == "HEAD":
        return False
    if response.status_code < 200 or response.status_code in (204, 206, 304):
        return False
    if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return False
    if "no-transform" in response.headers.get("cache-control", "").lower():
        return False
    content_type = response.headers.get("content-type", "").lower()
    if any(content_type.startswith(t) for t in SKIP_TYPES):
        return False
    if flow.request.http_version == "HTTP/1.0":
        return False  # no chunked encoding to frame a body of unknown length
    return accepts_gzip(flow.request.headers.get("accept-encoding", ""))


def add_vary(response: http.Response) -> None:
    vary = response.headers.get("vary", "")
    if "accept-encoding" not in vary.lower() and vary.strip() != "*":
        response.headers["Vary"] = f"{vary}, Accept-Encoding" if vary.strip() else "Accept-Encoding"


class Compression:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_of(flow.client_conn)
        if listener is None or not listener.base.compress or not compressible(flow):
            return
        response = flow.response
        assert response is not None
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) < MIN_SIZE:
            return
        if response.stream or not length.isdigit():
            current = response.stream
            if callable(current):
                return  # someone else transforms this body; do not guess how to combine
            response.stream = GzipStream()
            response.headers.pop("content-length", None)
            response.headers["Content-Encoding"] = "gzip"
            if flow.request.http_version != "HTTP/2.0" and "chunked" not in \
                    response.headers.get("transfer-encoding", "").lower():
                response.headers["Transfer-Encoding"] = "chunked"
            add_vary(response)
        else:
            flow.metadata[PENDING_KEY] = True

    def response(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.pop(PENDING_KEY, False) or flow.response is None or flow.response.stream:
            return
        if len(flow.response.raw_content or b"") < MIN_SIZE:
            return
        flow.response.encode("gzip")
        add_vary(flow.response)
