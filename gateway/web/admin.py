"""The admin listener (``admin:``, 127.0.0.1:9400 by default): /metrics, /healthz, /readyz and
the admin console under /console (gateway/web/console.py, admin users only), nothing else. Its own
socket, never a mitmproxy listener, so it can never reach a back end. Plain HTTP on a loopback
address; on any other address it is served over TLS with the gateway's own (default)
certificate, since console passwords and session cookies would otherwise cross the network in
clear. The port is bound in ``apply_config`` (a busy port refuses the configuration) and
served once the event loop runs; a changed host or port moves it on reload.

The app is mitmproxy-free: addons/admin.py serves it in a gateway process (adding the Master's
metrics), the supervisor of several workers serves it for the machine (gateway/run/supervisor.py).

It also keeps ``<state_dir>/run/<pid>.json`` (pid and ports of the running gateway),
which lets ``gateway check`` tell the gateway's own ports from ports taken by another program.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST

from gateway.web.sidelistener import Address, SideListener, SideRequest
from gateway.web import docs
from gateway.web.console import MAX_BODY, SECURITY_HEADERS, Console, is_console_path
from gateway.autocert.manager import problems as acme_problems
from gateway.config import GatewayConfig
from gateway.ops.journal import install_journal
from gateway.ops.health import RunInfo, remove_run_file, tcp_problem_async, write_run_file
from gateway.store.statecheck import current_problem as current_state_problem
from gateway.store.guarded import problems as store_problems
from gateway.store.handle import StoreHandle
from gateway.utils.net import is_loopback, split_authority
from gateway.web.server_tls import DefaultCertificateContext

logger = logging.getLogger("gateway.admin")
# Answered to a request without a Host header, a balancer's health check (see _misdirected).
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})

# /readyz asks every back end for a TCP connect; a second is long on a LAN.
READY_TIMEOUT = 1.0
PLAIN = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


# A worker's private admin listener (gateway/run/supervisor.py asks it for the machine) answers
# the supervisor only: /metrics, /healthz and /readyz, with the secret the supervisor handed the
# worker through an inherited pipe. Any other local program or user gets 403, and no console.
WORKER_SECRET_HEADER = "x-gateway-worker-secret"
WORKER_SECRET_FD_ENV = "GATEWAY_ADMIN_SECRET_FD"
_worker_secret: str | None = None


def read_worker_secret() -> None:
    """In a worker: take the supervisor's secret from the inherited pipe (never the environment,
    which other tools show). Without one the private listener answers nobody."""
    global _worker_secret
    fd = os.environ.pop(WORKER_SECRET_FD_ENV, None)
    data = b""
    if fd is not None:
        try:
            while chunk := os.read(int(fd), 256):
                data += chunk
            os.close(int(fd))
        except (OSError, ValueError):
            data = b""
    _worker_secret = data.decode("ascii", "replace").strip() or "\0unset"  # never equal to a header


REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 421: "Misdirected Request", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}

class AdminApp:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle), for the console."""
        self._listener = SideListener("admin.listen", self._respond, max_body=MAX_BODY)
        self._tls = DefaultCertificateContext()
        self._console = Console(stores)
        self._config: GatewayConfig | None = None
        self._started = time.time()
        self._loaded_at: float | None = None
        self._last_reload: dict[str, object] | None = None

    # --- configuration ---

    def apply_config(self, cfg: GatewayConfig) -> None:
        # Every gateway process writes its security events where any console can read them.
        install_journal(cfg.state_dir)
        wanted = Address(cfg.admin.host, cfg.admin.listen) if cfg.admin.enabled else None
        context = self._tls.for_config(cfg) if wanted is not None and not is_loopback(wanted.host) else None
        if self._listener.move(wanted, context) and wanted is not None:  # raises: configuration refused
            if cfg.admin.private:
                logger.info("worker's private admin listener on http://%s:%d/ (asked by the supervisor only; "
                            "the machine's admin listener is the supervisor's)", wanted.host, self.port or wanted.port)
            elif context is None:
                logger.info("admin listener on http://%s:%d/ (/metrics, /healthz, /readyz, /console, /docs)", wanted.host,
                            self.port or wanted.port)
            else:
                logger.warning("admin listener on https://%s:%d/ (/metrics, /healthz, /readyz, /console, /docs): %s is "
                               "not a loopback address, so it is served over TLS only, with the gateway's own "
                               "certificate", wanted.host, self.port or wanted.port, wanted.host)
        if cfg.admin.enabled and _worker_secret is None:
            self._console.apply_config(cfg)  # raises (store unusable): configuration refused
        self._config = cfg
        self._write_run_file()

    def running(self) -> None:
        self._write_run_file()
        self._listener.running()

    def done(self) -> None:
        self._listener.stop()
        self._console.done()
        if self._config is not None:
            remove_run_file(self._config.state_dir, os.getpid())

    def metrics_addon(self) -> object | None:
        """What /metrics reads; a gateway process's Master has one (addons/admin.py)."""
        return None

    def note_reload(self, last_reload: dict[str, object] | None, loaded_at: float | None) -> None:
        """The runner tells what `gateway status` and `gateway reload` read back from the run file."""
        self._last_reload, self._loaded_at = last_reload, loaded_at
        self._write_run_file()

    @property
    def port(self) -> int | None:
        return self._listener.port

    def _write_run_file(self) -> None:
        cfg = self._config
        if cfg is None:
            return
        ports = {listener.port for listener in cfg.listeners()}
        if cfg.enrolment.enabled:
            ports.add(cfg.enrolment.listen)
        if cfg.acme.enabled and cfg.acme.challenge_listen:
            ports.add(cfg.acme.challenge_listen)  # `check` then knows it is ours (0 in all workers but one)
        try:
            listeners = tuple(f"{l.scheme}://{cfg.listen_host or '*'}:{l.port} {l.base.name} ({l.role}) -> "
                              f"{l.endpoint.backend}" for l in cfg.listeners())
            write_run_file(cfg.state_dir, RunInfo(os.getpid(), tuple(sorted(ports)), self.port, self._started,
                                                  config=str(cfg.source), loaded_at=self._loaded_at,
                                                  last_reload=self._last_reload, listeners=listeners))
        except OSError as e:
            logger.warning("cannot write %s (gateway check may call the gateway's own ports taken): %s",
                           cfg.state_dir, e.strerror or e)

    # --- serving ---

    async def _respond(self, request: SideRequest) -> bytes:
        if _worker_secret is not None:
            return encode(await self._private_answer(request), head_only=request.method == "HEAD")
        misdirected = self._misdirected(request)
        if misdirected is not None:
            return encode(misdirected, head_only=request.method == "HEAD")
        if is_console_path(request.path):
            answer = await self.console(request)
        elif docs.is_docs_path(request.path):
            answer = await self.docs(request)
        else:
            answer = await self.answer(request.method, request.path)
        return encode(answer, head_only=request.method == "HEAD")

    def _misdirected(self, request: SideRequest) -> Answer | None:
        """The admin listener answers only to its own names (``admin.hosts``): a DNS-rebinding
        page in an administrator's browser names its own host, and gets nothing here. The health
        answers to HTTP/1.0 without a Host are the exception: a balancer's check (HAProxy's
        ``option httpchk``) sends exactly that, while a browser (and so a rebinding page) always
        names a host. HTTP/1.1 without Host is refused (RFC 9112 §3.2)."""
        cfg = self._config
        if cfg is None:
            return None
        host = request.headers.get("host")
        if host is None or not host.strip():
            if request.version == "HTTP/1.0" and request.path in HEALTH_PATHS:
                return None
            return Answer(400, PLAIN, b"400 Bad Request: no Host header\n")
        if split_authority(host)[0] not in cfg.admin.served_hosts():
            logger.warning("admin listener refused a request for host %r from %s (not in admin.hosts)",
                           host[:100], request.peer, extra={"event": "console-refused", "client": request.peer})
            return Answer(421, PLAIN, b"421 Misdirected Request: this listener does not serve that host name; "
                                      b"add it to admin.hosts if it is yours\n")
        return None

    async def _private_answer(self, request: SideRequest) -> Answer:
        assert _worker_secret is not None
        given = request.headers.get(WORKER_SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), _worker_secret.encode("utf-8", "replace")):
            return Answer(403, PLAIN, b"403 Forbidden: this is a worker's private listener; ask the supervisor's\n")
        if request.path not in ("/metrics", "/healthz", "/readyz"):
            return Answer(404, PLAIN, b"404 Not Found: a worker answers /metrics, /healthz and /readyz only\n")
        return await self.answer(request.method, request.path)

    async def console(self, request: SideRequest) -> Answer:
        page = await self._console.answer(request.method, request.target, request.headers, request.peer,
                                          request.body, request.tls)
        return Answer(page.status, page.content_type, page.data, SECURITY_HEADERS + page.headers)

    async def docs(self, request: SideRequest) -> Answer:
        site = self._config.admin.docs_dir if self._config else None
        # Reading a file: off the event loop, as /metrics renders.
        page = await asyncio.get_running_loop().run_in_executor(None, docs.answer, site, request.method, request.path)
        return Answer(page.status, page.content_type, page.body, page.headers)

    async def answer(self, method: str, path: str) -> Answer:
        if path not in ("/metrics", "/healthz", "/readyz"):
            return Answer(404, PLAIN, b"404 Not Found: this listener serves /metrics, /healthz, /readyz "
                                      b"/console and /docs only\n")
        if method not in ("GET", "HEAD"):
            return Answer(405, PLAIN, b"405 Method Not Allowed: use GET\n")
        if path == "/healthz":
            return Answer(200, PLAIN, b"ok\n")
        if path == "/readyz":
            state_problem = current_state_problem()
            if state_problem:
                return Answer(503, PLAIN, f"not ready; state folder: {state_problem}\n".encode())
            store_down = store_problems()
            if store_down:
                return Answer(503, PLAIN, ("not ready; user store down:\n" + "\n".join(store_down) + "\n").encode())
            return await self.readiness()
        metrics = self.metrics_addon()
        body = await asyncio.get_running_loop().run_in_executor(None, metrics.render) if metrics else b""
        return Answer(200, CONTENT_TYPE_LATEST, body)

    async def readiness(self) -> Answer:
        cfg = self._config
        backends = sorted({(l.endpoint.backend, l.endpoint.backend_host, l.endpoint.backend_port)
                           for l in (cfg.listeners() if cfg else [])})
        results = await asyncio.gather(*(tcp_problem_async(host, port, READY_TIMEOUT) for _, host, port in backends))
        down = [f"{url}: {problem}" for (url, _, _), problem in zip(backends, results) if problem]
        if down:
            return Answer(503, PLAIN, ("not ready; back ends not answering:\n" + "\n".join(down) + "\n").encode())
        expiring = await asyncio.get_running_loop().run_in_executor(None, _acme_problems, cfg)
        if expiring:
            return Answer(503, PLAIN, ("not ready; certificates not renewed:\n" + "\n".join(expiring) + "\n").encode())
        return Answer(200, PLAIN, f"ready: {len(backends)} back end(s) answer\n".encode())


def _acme_problems(cfg: GatewayConfig | None) -> list[str]:
    if cfg is None:
        return []
    names = {b.id: b.name for b in cfg.bases}
    return [f"base {names.get(base_id, base_id)!r}: {problem}" for base_id, problem in acme_problems(cfg)]


def encode(answer: Answer, head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, '')}\r\n"
            f"Content-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in answer.headers) +
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + answer.body
