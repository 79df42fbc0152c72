"""The built documentation site (``make docs`` → ``site/``) served read-only by the admin listener
at ``/docs``, so an administrator on a machine without internet has it at hand.

Only regular files under the site folder are answered: the path is decoded once, any ``..``,
backslash or NUL is refused before the file system is asked, and the resolved file must still lie
inside the folder (a symbolic link out of it is refused too). GET and HEAD only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

PREFIX = "/docs"
PLAIN = "text/plain; charset=utf-8"
# The console's headers, with a policy that lets the site's own scripts run (search, navigation):
# MkDocs Material puts small inline scripts in every page and runs search in a worker. The pages are
# static, carry no secret and take no input the server acts on, so inline scripts cost nothing here
# that the console's stricter policy protects.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'self'")
HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
TYPES = {
    ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".json": "application/json", ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
    ".jpg": "image/jpeg", ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2",
    ".gz": "application/gzip", ".map": "application/json",
}


@dataclass(frozen=True)
class DocsAnswer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = HEADERS


def is_docs_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def default_site_dir() -> Path:
    """Where ``make docs`` writes the site: ``site/`` in the checkout the gateway runs from."""
    return Path(__file__).resolve().parents[2] / "site"


def answer(site_dir: Path | None, method: str, path: str) -> DocsAnswer:
    if method not in ("GET", "HEAD"):
        return DocsAnswer(405, PLAIN, b"405 Method Not Allowed: the documentation is read-only\n")
    root = (site_dir or default_site_dir()).resolve()
    if not (root / "index.html").is_file():
        return DocsAnswer(404, PLAIN, (f"404 Not Found: no built documentation in {root}; run `make docs` "
                                       "in the checkout or set admin.docs_dir\n").encode())
    if path == PREFIX:
        return DocsAnswer(301, PLAIN, b"", HEADERS + (("Location", PREFIX + "/"),))
    relative = unquote(path[len(PREFIX) + 1:], errors="strict")
    parts = relative.split("/")
    if any(part in ("..", ".") for part in parts) or "\\" in relative or "\0" in relative:
        return DocsAnswer(404, PLAIN, b"404 Not Found\n")
    target = (root / relative).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not target.is_relative_to(root) or not target.is_file():
        return DocsAnswer(404, PLAIN, b"404 Not Found\n")
    content_type = TYPES.get(target.suffix.lower(), "application/octet-stream")
    return DocsAnswer(200, content_type, target.read_bytes())
