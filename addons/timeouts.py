"""A back end that never answers gets 504, not an endless wait.

mitmproxy has no read timeout for HTTP back ends. A watchdog checks the requests in flight
every half second; a request whose response headers are overdue has its back-end connection
closed, and ErrorPages turns the resulting failure into a 504 naming the base.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import ctx, http

from addons import errorpages
from addons._context import current_config

logger = logging.getLogger("gateway.backend")

WATCHDOG_INTERVAL = 0.5


class BackendTimeout:
    def __init__(self) -> None:
        self._deadlines: dict[http.HTTPFlow, float] = {}
        self._task: asyncio.Task[None] | None = None

    def running(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task:
            self._task.cancel()

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        self._deadlines[flow] = time.monotonic() + current_config().proxy.backend_timeout

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._deadlines.pop(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._deadlines.pop(flow, None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            now = time.monotonic()
            for flow, deadline in list(self._deadlines.items()):
                if now >= deadline:
                    self._deadlines.pop(flow, None)
                    self._cut(flow)

    def _cut(self, flow: http.HTTPFlow) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        io = handler.transports.get(flow.server_conn) if handler else None
        if io is None or io.writer is None:
            return
        logger.warning("back end %s:%s did not answer %s %s within %.0f s; answering 504",
                       flow.request.host, flow.request.port, flow.request.method,
                       flow.request.path.split("?", 1)[0], current_config().proxy.backend_timeout)
        flow.metadata["gateway_verdict"] = "backend-error"
        errorpages.mark_timed_out(flow.client_conn)
        io.writer.close()
