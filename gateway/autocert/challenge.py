"""Answering HTTP-01: the key authorization for a token, read from the file the order wrote.

Used by the gateway's challenge listener and by `gateway cert acme renew` when no gateway runs.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway.certs import acme_storage as storage

PREFIX = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def answer(state_dir: Path, path: str) -> bytes | None:
    """The key authorization for an HTTP-01 token, or None (404)."""
    if not path.startswith(PREFIX):
        return None
    token = path[len(PREFIX):]
    if not _TOKEN.match(token):  # no "..", "/" or any other way out of the folder
        return None
    try:
        return (storage.http_challenge_folder(state_dir) / token).read_bytes()
    except OSError:
        return None


class StandaloneResponder:
    """A short-lived HTTP-01 listener for `gateway cert acme renew` while no gateway runs."""

    def __init__(self, state_dir: Path, host: str, port: int) -> None:
        folder = state_dir

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's naming
                body = answer(folder, self.path.split("?", 1)[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/octet-stream" if body else "text/plain")
                self.send_header("Content-Length", str(len(body or b"Not Found\n")))
                self.end_headers()
                self.wfile.write(body or b"Not Found\n")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # On the subclass: setting it on ThreadingHTTPServer would change every other server
            # of this process (the CLI runs inside other Python programs, e.g. the tests).
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)  # OSError when the port is taken
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandaloneResponder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
