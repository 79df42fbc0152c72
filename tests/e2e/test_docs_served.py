"""Issue 25 point 5: the built documentation site served read-only by a running gateway's admin
listener at /docs — the pages and the search assets with the console's security headers, and no
file outside the site however the path is spelled."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx

from tests.harness import RunningGateway, Standin, free_port, gateway_config


def _raw_get(port: int, target: str) -> bytes:
    """A request line sent as written: httpx would normalise the ``..`` away."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_admin_listener_serves_the_built_site(built_site: Path, standin: Standin, tmp_path: Path,
                                                  gateway_factory: object) -> None:
    admin = free_port()
    config = gateway_config(tmp_path, standin, admin={"enabled": True, "host": "127.0.0.1", "listen": admin,
                                                     "docs_dir": str(built_site)})
    gw: RunningGateway = gateway_factory(config)  # type: ignore[operator]
    base = f"http://127.0.0.1:{admin}"
    with httpx.Client(timeout=10) as client:
        index = client.get(f"{base}/docs/index.html")
        assert index.status_code == 200 and index.headers["content-type"] == "text/html; charset=utf-8"
        assert index.content == (built_site / "index.html").read_bytes()
        for header, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                              ("referrer-policy", "no-referrer")):
            assert index.headers[header] == value
        assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
        assert client.get(f"{base}/docs/").content == index.content

        search_index = client.get(f"{base}/docs/search/search_index.json")
        assert search_index.status_code == 200 and search_index.headers["content-type"] == "application/json"
        assert "docs" in search_index.json()
        script = re.search(r'src="(assets/javascripts/[^"]+\.js)"', index.text)
        assert script, "the page names no script of the theme"
        asset = client.get(f"{base}/docs/{script.group(1)}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")

        assert client.post(f"{base}/docs/index.html", content=b"x").status_code == 405
    for target in ("/docs/../gateway.yaml", "/docs/%2e%2e/gateway.yaml", "/docs/..%2f..%2fetc%2fpasswd",
                   "/docs/search/../../gateway.yaml", "/docs/..\\gateway.yaml"):
        answer = _raw_get(admin, target)
        assert answer.startswith(b"HTTP/1.1 404") or answer.startswith(b"HTTP/1.1 400"), (target, answer[:200])
        assert b"state_dir" not in answer and b"root:" not in answer
    assert gw.process.poll() is None
