"""Test and benchmark endpoints that the legacy server does not have, and the print port.

/echo shows exactly what arrived (so gateway tests can see forwarded and identity headers),
/bytes and /gzip-json produce reproducible bodies, /slow provokes back-end timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

from gateway.standin import data
from gateway.standin.http11 import HttpError, Request, Response
from gateway.standin.responses import json_response

# The gateway's default back-end timeout is 60 s; 600 s covers any timeout test.
MAX_SLOW_SECONDS = 600.0
DEFAULT_GZIP_ITEMS = 1000
MAX_GZIP_ITEMS = 200_000


async def echo(request: Request) -> Response:
    """What was received: method, path, query, headers, and the body's length and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    async for piece in request.body:
        digest.update(piece)
        size += len(piece)
    headers: dict[str, str] = {}
    for name, value in request.head.headers:
        # Lower-case names, as HTTP/2 and most libraries present them; repeats joined (RFC 9110 5.3).
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return json_response(200, {
        "method": request.method,
        "path": request.raw_path,
        "decoded_path": "/" + "/".join(request.segments),
        "query": request.query,
        "http_version": request.head.version,
        "headers": headers,
        "body_length": size,
        "body_sha256": digest.hexdigest(),
        "port": request.local_port,
        "peer": request.peer,
    })


def random_bytes(request: Request) -> Response:
    params = request.params
    size_text, seed = params.get("n", "0"), params.get("seed", "0")
    if not size_text.isdigit() or int(size_text) > data.MAX_RANDOM_BYTES:
        raise HttpError(400, f"n must be an integer from 0 to {data.MAX_RANDOM_BYTES}, got {size_text[:30]!r}")
    size = int(size_text)
    headers = [("Content-Type", "application/octet-stream"), ("X-Body-SHA256", data.random_sha256(size, seed))]
    return Response(200, headers, data.random_pieces(size, seed), content_length=size)


async def slow(request: Request) -> Response:
    text = request.params.get("seconds", "1")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_SLOW_SECONDS:
        raise HttpError(400, f"seconds must be a number from 0 to {MAX_SLOW_SECONDS:g}, got {text[:30]!r}")
    await request.body.drain()
    await asyncio.sleep(seconds)
    return json_response(200, {"slept": seconds})


def gzip_json(request: Request) -> Response:
    text = request.params.get("n", str(DEFAULT_GZIP_ITEMS))
    if not text.isdigit() or int(text) > MAX_GZIP_ITEMS:
        raise HttpError(400, f"n must be an integer from 0 to {MAX_GZIP_ITEMS}, got {text[:30]!r}")
    body = data.gzip_products("/api/v1/$metadata#Products", int(text))
    return Response(200, [("Content-Type", "application/json; charset=utf-8"), ("Content-Encoding", "gzip")], body)


async def tool_route(request: Request) -> Response | None:
    """The answer of a test endpoint, or None when the path is not one (both ports have echo)."""
    segments = request.segments
    if segments[:1] == ["echo"]:
        return await echo(request)
    if segments[:1] == ["slow"] and len(segments) == 2 and request.method in ("GET", "HEAD"):
        return await slow(request)  # /slow/<label>: a test tells its own requests apart in the logs
    if len(segments) != 1 or request.method not in ("GET", "HEAD"):
        return None
    match segments[0]:
        case "bytes":
            return random_bytes(request)
        case "slow":
            return await slow(request)
        case "gzip-json":
            return gzip_json(request)
    return None


class PrintService:
    """The print-server port: accepts labels and reports its status; it prints nothing."""

    def __init__(self) -> None:
        self._job_ids = itertools.count(1)
        self.jobs = 0
        self.bytes_received = 0

    async def handle(self, request: Request) -> Response | None:
        segments = request.segments
        if segments == ["print"]:
            if request.method != "POST":
                raise HttpError(405, "use POST /print with the label as the body", [("Allow", "POST")])
            size = 0
            async for piece in request.body:
                size += len(piece)
            job = next(self._job_ids)
            self.jobs += 1
            self.bytes_received += size
            return json_response(200, {"job": job, "bytes": size, "status": "queued", "port": request.local_port})
        if segments == ["status"]:
            if request.method not in ("GET", "HEAD"):
                raise HttpError(405, "use GET /status", [("Allow", "GET, HEAD")])
            status: dict[str, Any] = {"status": "ready", "jobs": self.jobs, "bytes": self.bytes_received,
                                      "port": request.local_port}
            return json_response(200, status)
        return None
