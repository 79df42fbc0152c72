"""A TLS connection-rate load generator: every request on a new connection, so a TLS handshake
per request — full (``--resume`` off) or resuming the previous session (``--resume``).

    python bench/handshakes.py https://127.0.0.1:9443/path -d 5 -p 2 [--resume]

Prints one JSON line: handshakes/s, how many were resumed, errors. Used by run.py --handshakes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit


def worker(url: str, duration: float, resume: bool, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").encode()
    session = None
    done = resumed = errors = 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=host, session=session if resume else None) as tls:
                    tls.sendall(request)
                    answer = b""
                    while chunk := tls.recv(65536):
                        answer += chunk
                    if not answer.startswith(b"HTTP/1.1 200"):
                        errors += 1
                        continue
                    done += 1
                    resumed += tls.session_reused
                    if resume:
                        session = tls.session  # the newest ticket (TLS 1.3 tickets arrive after the handshake)
        except (OSError, ssl.SSLError):
            errors += 1
    results.put((done, resumed, errors))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-p", "--processes", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    started = time.monotonic()
    processes = [multiprocessing.Process(target=worker, args=(args.url, args.duration, args.resume, results))
                 for _ in range(args.processes)]
    for process in processes:
        process.start()
    totals = [results.get(timeout=args.duration + 60) for _ in processes]
    for process in processes:
        process.join(10)
    elapsed = time.monotonic() - started
    done = sum(t[0] for t in totals)
    print(json.dumps({"handshakes": done, "resumed": sum(t[1] for t in totals), "errors": sum(t[2] for t in totals),
                      "rps": done / elapsed if elapsed > 0 else 0.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
