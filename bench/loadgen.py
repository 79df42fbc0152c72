"""A small HTTP/1.1 keep-alive load generator, for machines without wrk.

Same shape as ``wrk -t1 -cN -dS --latency URL``: N persistent connections on one thread, each
sending the next request as soon as the previous answer is in; prints one JSON line with
requests/s, p50/p99 latency and the error count. Raw asyncio streams rather than httpx: an
HTTP client library spends several times the CPU per request that the proxy under test does,
and the generator would measure itself. TLS certificates are not verified (loopback only).

Usage: python bench/loadgen.py URL [--connections N] [--duration S] [--header "Name: value"]...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0  # non-2xx/3xx answers
    socket_errors: int = 0  # connects refused, connections cut mid-answer
    first_error: str = ""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    request: bytes


def build_target(url: str, headers: list[str]) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "User-Agent: gateway-bench", "Accept: */*"]
    lines += headers
    return Target(parts.hostname, port, tls, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one whole response; returns its status and whether the server will close."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.decode("latin-1").partition("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length: int | None = None
    chunked = False
    close = status_line.startswith("HTTP/1.0")
    for line in header_block.split("\r\n"):
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection":
            close = "close" in value
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    elif status not in (204, 304) and status >= 200:
        await reader.read()  # length given by the end of the connection
        close = True
    return status, close


async def connection(target: Target, context: ssl.SSLContext | None, deadline: float, tally: Tally) -> None:
    clock = time.perf_counter
    while clock() < deadline:
        try:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context, server_hostname=target.host if context else None)
        except OSError as e:
            tally.socket_errors += 1
            tally.first_error = tally.first_error or f"connect: {e}"
            await asyncio.sleep(0.05)
            continue
        try:
            while clock() < deadline:
                started = clock()
                writer.write(target.request)
                status, close = await read_response(reader)
                tally.latencies.append(clock() - started)
                if status >= 400:
                    tally.errors += 1
                if close:
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            tally.socket_errors += 1
            tally.first_error = tally.first_error or f"read: {type(e).__name__}: {e}"
        finally:
            writer.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(url: str, connections: int, duration: float, headers: list[str]) -> dict[str, object]:
    target = build_target(url, headers)
    context = None
    if target.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
    tally = Tally()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(connection(target, context, deadline, tally) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies = sorted(tally.latencies)
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": tally.errors,
        "socket_errors": tally.socket_errors,
        "first_error": tally.first_error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=16)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("--header", "-H", action="append", default=[])
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.connections, args.duration, args.header))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
