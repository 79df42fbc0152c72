"""Feeds the console's dashboard: counts requests, refusals by reason, failed logins, latency
and open connections per base and minute, and adds them to the state folder's per-minute file
(gateway/ops/minutes.py) every ``GATEWAY_MINUTES_FLUSH_SECONDS`` (60 by default; tests set 1).

Counting never refuses anything and a failed flush only loses that flush's numbers (logged), so
the hooks are not fail-closed checks: they deny nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from mitmproxy import connection, http

from addons._background import BackgroundTask
from addons._context import listener_of
from addons.accesslog import ENTRY_KEY, entry
from gateway.config import GatewayConfig
from gateway.ops import minutes

logger = logging.getLogger("gateway.metrics")

FLUSH_ENV = "GATEWAY_MINUTES_FLUSH_SECONDS"
COUNTED = "gateway_minute_counted"


def flush_interval() -> float:
    try:
        return max(0.2, float(os.environ.get(FLUSH_ENV, "60")))
    except ValueError:
        return 60.0


class Minutes:
    def __init__(self) -> None:
        self.state_dir: Path | None = None
        self._pending: dict[tuple[int, str], minutes.MinuteCounts] = {}
        self._open: dict[str, str] = {}  # client id → base name
        self._open_by_base: dict[str, int] = {}
        self._task = BackgroundTask(self._loop)
        self.worker = str(os.getpid())

    def apply_config(self, cfg: GatewayConfig) -> None:
        self.state_dir = cfg.state_dir

    def running(self) -> None:
        self._task.start()

    def done(self) -> None:
        self._task.stop()
        try:
            self._flush()
        except Exception as e:  # shutting down: say so, lose this minute's numbers only
            logger.warning("dashboard numbers not saved at shutdown: %s", e)

    def _counts(self, base: str) -> minutes.MinuteCounts:
        key = (minutes.minute_of(time.time()), base)
        if key not in self._pending:
            self._pending[key] = minutes.MinuteCounts()
        return self._pending[key]

    def client_connected(self, client: connection.Client) -> None:
        listener = listener_of(client)
        if listener is None:
            return
        name = listener.base.name
        if client.error:  # refused by IpFilter or the connection limits before any request
            self._counts(name).add_refused_connection()
            return
        self._open[client.id] = name
        self._open_by_base[name] = self._open_by_base.get(name, 0) + 1

    def client_disconnected(self, client: connection.Client) -> None:
        name = self._open.pop(client.id, None)
        if name is not None:
            self._open_by_base[name] -= 1

    def response(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def _count(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(COUNTED):
            return
        flow.metadata[COUNTED] = True
        fields = flow.metadata.get(ENTRY_KEY) or entry(flow, time.time())
        if not fields["base"]:
            return
        counts = self._counts(fields["base"])
        counts.add_request(fields["verdict"], fields["duration_ms"])
        if fields["verdict"] == "denied-auth" and "authorization" in flow.request.headers:
            counts.failed_logins += 1

    def _take(self) -> dict[tuple[int, str], minutes.MinuteCounts]:
        for base, count in self._open_by_base.items():
            if count:
                self._counts(base)
        for (_minute, base), counts in self._pending.items():
            counts.open_connections = self._open_by_base.get(base, 0)
        taken, self._pending = self._pending, {}
        return taken

    def _flush(self) -> None:
        taken = self._take()
        if taken and self.state_dir is not None:
            minutes.flush(self.state_dir, self.worker, taken)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(flush_interval())
            taken = self._take()
            if not taken or self.state_dir is None:
                continue
            try:
                await asyncio.to_thread(minutes.flush, self.state_dir, self.worker, taken)
            except Exception as e:  # a locked or full disk: the dashboard misses these numbers
                logger.warning("dashboard numbers not saved: %s", e)
