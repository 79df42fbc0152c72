"""A recorded-answer ACME server for what pebble lacks (ARI, profiles): an HTTPS server on
loopback that replays recorded JSON documents, answers only the exact URLs a real CA would
(ARI only for the one certificate it knows), and records every request for the test to read.
Not a stub that agrees with everything: unknown paths are 404, and it answers an order with
the problem document a real CA sent."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.certs.authority import create_ca, issue_server_certificate, write_server_certificate


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Recorded:
    directory_meta: dict[str, Any] = field(default_factory=dict)
    renewal_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # ARI id → document
    # Let's Encrypt's answer to an order it will not fill, recorded.
    order_problem: dict[str, Any] = field(default_factory=lambda: {
        "type": "urn:ietf:params:acme:error:rateLimited",
        "detail": "too many certificates (5) already issued for this exact set of identifiers in the last "
                  "168h0m0s, retry after 2026-12-01 00:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/",
        "status": 429})


class FakeAcme:
    def __init__(self, folder: Path, recorded: Recorded) -> None:
        ca = create_ca(folder / "tls", common_name="fake ACME TLS CA")
        cert, key = issue_server_certificate(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")], days=30)
        cert_file, key_file = write_server_certificate(folder / "tls", ca, cert, key)
        self.ca_bundle = ca.cert_file
        self.recorded = recorded
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, decoded JWS payload)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Replay-Nonce", base64.urlsafe_b64encode(ssl.RAND_bytes(16)).decode().rstrip("="))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802
                fake.requests.append(("HEAD", self.path, None))
                self._send(200 if self.path == "/nonce" else 404, None)

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(("GET", self.path, None))
                if self.path == "/dir":
                    self._send(200, fake.directory())
                elif self.path.startswith("/ari/") and self.path[5:] in fake.recorded.renewal_info:
                    self._send(200, fake.recorded.renewal_info[self.path[5:]], headers={"Retry-After": "21600"})
                else:
                    self._send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "not found"},
                               "application/problem+json")

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                payload_text = body.get("payload", "")
                payload = json.loads(_b64decode(payload_text)) if payload_text else None
                fake.requests.append(("POST", self.path, payload))
                if self.path == "/new-account":
                    self._send(201, {"status": "valid", "contact": (payload or {}).get("contact", [])},
                               headers={"Location": f"{fake.base}/acct/1"})
                elif self.path == "/new-order":
                    problem = fake.recorded.order_problem
                    self._send(int(problem.get("status", 400)), problem, "application/problem+json")
                else:
                    self._send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "not found"},
                               "application/problem+json")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    def directory(self) -> dict[str, Any]:
        return {"newNonce": f"{self.base}/nonce", "newAccount": f"{self.base}/new-account",
                "newOrder": f"{self.base}/new-order", "revokeCert": f"{self.base}/revoke",
                "keyChange": f"{self.base}/key-change", "renewalInfo": f"{self.base}/ari",
                "meta": self.recorded.directory_meta}

    def posts(self, path: str) -> list[Any]:
        return [payload for method, p, payload in self.requests if method == "POST" and p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
