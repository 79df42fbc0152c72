"""Issue 23 points 9 and 17: the back end's own address never leaves in a redirect, and plain
HTTP on an https port may send a browser to https:// (never a request carrying credentials)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, gateway_config

Factory = Callable[..., RunningGateway]


class _Redirecting(BaseHTTPRequestHandler):
    """A legacy server that knows itself only by its internal address, as IIS does."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        own = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.send_response(301 if self.path == "/Docs" else 200)
        if self.path == "/Docs":
            self.send_header("Location", f"{own}/Docs/")
        self.send_header("Content-Location", f"{own}/Docs/index.html")
        self.send_header("Refresh", f"5; url={own}/Later?x=1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def iis() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _base(standin: Standin, base_id: str, backend_port: int, **overrides: Any) -> dict[str, Any]:
    entry = base_entry(standin, base_id, f"Склад {base_id}", **overrides)
    entry["data"]["backend"] = f"http://127.0.0.1:{backend_port}"
    return entry


def test_location_content_location_and_refresh_name_the_gateway(standin: Standin, gateway_factory: Factory,
                                                                 tmp_path: Path, iis: int) -> None:
    gw = gateway_factory(gateway_config(tmp_path, bases=[_base(standin, "on", iis),
                                                        _base(standin, "off", iis, proxy_redirect="off")]))
    port = gw.port("on")
    with httpx.Client(verify=gw.ca_file, follow_redirects=False) as http:
        answer = http.get(gw.url("on", path="/Docs"))
        assert answer.status_code == 301
        assert answer.headers["Location"] == f"https://127.0.0.1:{port}/Docs/"
        assert answer.headers["Content-Location"] == f"https://127.0.0.1:{port}/Docs/index.html"
        assert answer.headers["Refresh"] == f"5; url=https://127.0.0.1:{port}/Later?x=1"
        # The name the client used is kept (a certificate name, not the address).
        named = http.get(gw.url("on", path="/Docs"), headers={"Host": f"localhost:{port}"})
        assert named.headers["Location"] == f"https://localhost:{port}/Docs/"
        # Followed, the redirect stays on the gateway and succeeds.
        assert http.get(gw.url("on", path="/Docs"), follow_redirects=True).text == "ok"
        untouched = http.get(gw.url("off", path="/Docs"))
        assert untouched.headers["Location"] == f"http://127.0.0.1:{iis}/Docs/"


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_plain_http_redirect_for_browsers_never_for_credentials(standin: Standin, gateway_factory: Factory,
                                                                tmp_path: Path) -> None:
    on = base_entry(standin, "on", "Склад с переадресацией", http_redirect=True, user_auth=True)
    off = base_entry(standin, "off", "Склад без переадресации")
    gw = gateway_factory(gateway_config(tmp_path, bases=[on, off]))
    port = gw.port("on")
    with httpx.Client(follow_redirects=False) as http:
        answer = http.get(f"http://127.0.0.1:{port}/api/v1/Docs?x=1", headers={"Host": f"localhost:{port}"})
        assert answer.status_code == 301
        assert answer.headers["Location"] == f"https://localhost:{port}/api/v1/Docs?x=1"
        assert http.head(f"http://127.0.0.1:{port}/").status_code == 301
        # A password in clear text: refused, never redirected, and logged.
        leaked = http.get(f"http://127.0.0.1:{port}/api/v1/Docs", auth=("кладовщик", "секрет-пароль"))
        assert leaked.status_code == 400 and "Location" not in leaked.headers
        assert http.get(f"http://127.0.0.1:{port}/", cookies={"gateway_session": "x"}).status_code == 400
        assert http.post(f"http://127.0.0.1:{port}/api/v1/Docs", content=b"{}").status_code == 400
        # Off by default.
        assert http.get(f"http://127.0.0.1:{gw.port('off')}/").status_code == 400
    gw.wait_for_log(r"plain HTTP with credentials on HTTPS port \d+ of base 'Склад с переадресацией' from 127\.0\.0\.1")
    assert "секрет-пароль" not in gw.log()
    # A Host that would send the browser elsewhere is refused, not redirected.
    assert _raw(port, b"GET / HTTP/1.1\r\nHost: evil.example/x@\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 400")
