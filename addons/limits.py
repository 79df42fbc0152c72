"""Limits per connection and per client address, client-side timeouts, bounded response memory.

* **Connections**: at most ``limits.max_connections_per_ip`` from one address and
  ``limits.max_connections`` in total, refused in ``client_connected`` — before any TLS
  handshake — with one log line per address per 10 s, however many are refused. Counted on the
  client address mitmproxy reports (the PROXY-protocol address when a balancer passes one) and
  per worker process.
* **Timeouts** (nginx names): a watchdog looks at every connection twice a second and closes
  the ones past ``tls_handshake_timeout`` (no TLS yet), ``client_header_timeout`` (a request
  head begun, or nothing sent on a fresh connection), ``keepalive_timeout`` (idle between
  requests), ``client_body_timeout`` (a request body that stopped arriving) or ``send_timeout``
  (an answer the client stopped reading). Each close is counted in ``/metrics``
  (``gateway_client_timeouts{kind=...}``).
* **Memory**: an answer larger than ``limits.response_buffer`` (or of unknown length) is
  streamed: mitmproxy then reads from the back end only as fast as the client takes the data,
  so a client that stops reading holds one socket buffer, not the whole answer.
* **Body size**: ``client_max_body_size`` (per base, or the ``limits`` default) → 413.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import connection, ctx, http, tls

from addons import _engine_patches
from addons._context import listener_of, listener_to_check
from addons._guard import already_answered, deny, fail_closed
from gateway.config import BaseConfig, GatewayConfig
from gateway.traffic.limits import LimitSettings, raise_open_files_limit

logger = logging.getLogger("gateway.limits")

WATCHDOG_INTERVAL = 0.5
REFUSAL_LOG_INTERVAL = 10.0
FILES_RESERVED = 64  # descriptors kept for listeners, logs, the store, certificates
TIMEOUT_KINDS = ("tls_handshake", "client_header", "client_body", "keepalive", "send")

# Counted here, exported by addons/metrics.py (read at scrape time).
counters: collections.Counter[str] = collections.Counter()


@dataclass
class _Conn:
    client: connection.Client
    address: str
    needs_tls: bool
    since: float                      # start of the current wait (connect, TLS done, last answer)
    requests: int = 0
    inflight: int = 0
    body_pending: int = 0
    head_started: float | None = None  # first byte of a request head not yet complete
    tunnel: bool = False               # a WebSocket after 101: idle by nature, no client timeouts
    send_size: int = 0
    send_progress: float = field(default_factory=time.monotonic)


def security_event(kind: str, address: str, detail: str) -> None:
    """One security event of this concern: counted for /metrics, one WARNING line."""
    counters[kind] += 1
    logger.warning("%s: %s", address, detail, extra={"event": kind, "client": address,
                                                    "verdict": "bad-request" if kind == "refused-head" else kind})


class Limits:
    def __init__(self) -> None:
        _engine_patches.install()
        _engine_patches.on_event = self._engine_event
        _engine_patches.body_limit = self._client_body_limit
        self.limits = LimitSettings()
        self._conns: dict[str, _Conn] = {}
        self._per_address: collections.Counter[str] = collections.Counter()
        self._refused_logged: dict[str, tuple[float, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._nofile_logged = False
        self._open_files: int | None = None
        self._capped_logged = 0

    def apply_config(self, cfg: GatewayConfig) -> None:
        if not self._nofile_logged:
            self._nofile_logged = True
            result = raise_open_files_limit()
            if result is None:
                logger.info("open-files limit: not applicable on this system")
            else:
                self._open_files = result[0]
                soft, hard = result
                logger.info("open-files limit: %d (hard limit %d)", soft, hard,
                            extra={"event": "open-files-limit", "soft": soft, "hard": hard})
                if soft < 4096:
                    logger.warning("the open-files limit is only %d: each client connection takes one; "
                                   "raise it (systemd: LimitNOFILE=65536)", soft)
        limits = cfg.limits
        if self._open_files is not None:
            # Each connection takes a descriptor, and another for its back end; past the limit
            # accept() fails for everyone, so refuse politely before that.
            room = max(16, (self._open_files - FILES_RESERVED) // 2)
            if limits.max_connections == 0 or limits.max_connections > room:
                if limits.max_connections and limits.max_connections != self._capped_logged:
                    # Once per value, not at every reload; the arithmetic is spelled out, as "10000 is
                    # more than 20000 allows" reads as a contradiction.
                    self._capped_logged = limits.max_connections
                    logger.warning("limits.max_connections %d needs about %d open files (each connection takes "
                                   "two), more than the open-files limit %d allows; using %d (raise LimitNOFILE, "
                                   "or set max_connections to %d or less)",
                                   limits.max_connections, 2 * limits.max_connections + FILES_RESERVED,
                                   self._open_files, room, room)
                limits = dataclasses.replace(limits, max_connections=room)
        self.limits = limits
        _engine_patches.set_limits(cfg.limits)

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- connections -----------------------------------------------------------------------

    @fail_closed
    def client_connected(self, client: connection.Client) -> None:
        if client.error:
            return
        address = client.peername[0] if client.peername else ""
        limits = self.limits
        if limits.max_connections and len(self._conns) >= limits.max_connections:
            self._refuse(client, address, f"the gateway holds {limits.max_connections} connections (max_connections)")
            return
        refused_for = _engine_patches.reset_ledger.banned_for(address, time.monotonic())
        if refused_for:
            self._refuse(client, address, f"too many HTTP/2 stream resets; refused for {refused_for:.0f} s more")
            return
        if limits.max_connections_per_ip and self._per_address[address] >= limits.max_connections_per_ip:
            self._refuse(client, address,
                         f"{limits.max_connections_per_ip} connections from this address (max_connections_per_ip)")
            return
        listener = listener_of(client)
        needs_tls = bool(listener and listener.base.https)
        self._conns[client.id] = _Conn(client, address, needs_tls, time.monotonic())
        self._per_address[address] += 1

    def client_disconnected(self, client: connection.Client) -> None:
        conn = self._conns.pop(client.id, None)
        if conn is not None:
            self._release(conn)

    def _release(self, conn: _Conn) -> None:
        """Give back the place a connection took from its address's count."""
        self._per_address[conn.address] -= 1
        if self._per_address[conn.address] <= 0:
            del self._per_address[conn.address]

    def _refuse(self, client: connection.Client, address: str, why: str) -> None:
        client.error = f"refused: {why}"
        counters["refused_connections"] += 1
        now = time.monotonic()
        last, suppressed = self._refused_logged.get(address, (0.0, 0))
        if now - last >= REFUSAL_LOG_INTERVAL:
            more = f" (and {suppressed} more refused in the last {REFUSAL_LOG_INTERVAL:.0f} s)" if suppressed else ""
            logger.warning("refusing connections from %s: %s%s", address, why, more,
                           extra={"event": "connection-limit", "client": address})
            self._refused_logged[address] = (now, 0)
            if len(self._refused_logged) > 10000:
                self._refused_logged.clear()
        else:
            self._refused_logged[address] = (last, suppressed + 1)

    def tls_established_client(self, data: tls.TlsData) -> None:
        conn = self._conns.get(data.context.client.id)
        if conn is not None:
            conn.needs_tls = False
            conn.since = time.monotonic()

    # --- requests --------------------------------------------------------------------------

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        conn = self._conns.get(flow.client_conn.id)
        if conn is not None:
            conn.requests += 1
            conn.inflight += 1
            conn.head_started = None
            conn.body_pending += 1
            flow.metadata["gateway_limits_body"] = True
        if already_answered(flow):
            return
        listener = listener_to_check(flow)
        if listener is None:
            return
        limit = self._body_limit(listener.base)
        length = flow.request.headers.get("content-length", "")
        if limit and length.isdigit() and int(length) > limit:
            self._too_large(flow, limit)

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        self._body_done(flow)
        if already_answered(flow):
            return
        listener = listener_of(flow.client_conn)
        limit = self._body_limit(listener.base) if listener else 0
        if limit and not flow.request.stream and flow.request.raw_content is not None \
                and len(flow.request.raw_content) > limit:
            self._too_large(flow, limit)

    def _client_body_limit(self, client: connection.Client) -> int:
        listener = listener_of(client)
        return self._body_limit(listener.base) if listener is not None else 0

    def _body_limit(self, base: BaseConfig) -> int:
        own = base.client_max_body_size
        return own if own is not None else self.limits.client_max_body_size

    @staticmethod
    def _too_large(flow: http.HTTPFlow, limit: int) -> None:
        flow.metadata["gateway_verdict"] = "denied-limit"
        flow.metadata["gateway_reason"] = "request body too large"
        deny(flow, 413, f"413 Content Too Large: the request body is larger than {limit} bytes.")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream:
            return
        length = response.headers.get("content-length", "")
        if not length.isdigit() or int(length) > self.limits.response_buffer:
            # Streamed: the back end is read only as fast as the client reads.
            response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        self._flow_done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._flow_done(flow)

    def _body_done(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop("gateway_limits_body", False):
            conn = self._conns.get(flow.client_conn.id)
            if conn is not None:
                conn.body_pending = max(0, conn.body_pending - 1)

    def _flow_done(self, flow: http.HTTPFlow) -> None:
        self._body_done(flow)
        if flow.metadata.pop("gateway_limits_done", False):
            return
        flow.metadata["gateway_limits_done"] = True
        conn = self._conns.get(flow.client_conn.id)
        if conn is not None and conn.inflight > 0:
            conn.inflight -= 1
            conn.since = time.monotonic()
            if flow.response is not None and flow.response.status_code == 101:
                conn.tunnel = True

    # --- from the engine patches -------------------------------------------------------------

    def _engine_event(self, kind: str, client: Any, detail: str) -> None:
        if kind == "head-bytes":
            conn = self._conns.get(client.id)
            if conn is not None and conn.head_started is None:
                conn.head_started = time.monotonic()
            return
        security_event(kind, client.peername[0] if getattr(client, "peername", None) else "", detail)

    # --- the watchdog ------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            try:
                self._sweep(time.monotonic())
            except Exception:
                logger.exception("client timeout watchdog failed; it keeps running")

    def _sweep(self, now: float) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None:
            return
        limits = self.limits
        for client_id, conn in list(self._conns.items()):
            handler = proxyserver.connections.get(client_id)
            if handler is None:
                continue
            io = handler.transports.get(conn.client)
            if io is None or io.handler is None:
                continue
            kind = self._expired(conn, io, handler, limits, now)
            if kind is not None:
                counters[f"timeout_{kind}"] += 1
                logger.debug("closing %s: %s_timeout", conn.address, kind)
                io.handler.cancel(f"{kind} timeout")
                del self._conns[client_id]
                self._release(conn)

    @staticmethod
    def _expired(conn: _Conn, io: Any, handler: Any, limits: LimitSettings, now: float) -> str | None:
        transport = getattr(io.writer, "transport", None)
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        buffered += _engine_patches.h2_pending_bytes(conn.client)
        if buffered == 0 or buffered < conn.send_size:
            conn.send_progress = now
        conn.send_size = buffered
        if buffered and now - conn.send_progress > limits.send_timeout:
            return "send"
        if conn.tunnel:
            return None
        if conn.needs_tls and not conn.client.tls_established:
            return "tls_handshake" if now - conn.since > limits.tls_handshake_timeout else None
        if conn.inflight == 0:
            if buffered:
                return None
            if conn.head_started is not None:
                return "client_header" if now - conn.head_started > limits.client_header_timeout else None
            if conn.requests == 0:
                return "client_header" if now - conn.since > limits.client_header_timeout else None
            return "keepalive" if now - conn.since > limits.keepalive_timeout else None
        if conn.body_pending:
            idle = time.time() - handler.timeout_watchdog.last_activity
            if idle > limits.client_body_timeout:
                return "client_body"
        return None
