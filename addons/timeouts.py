"""A back end that never answers gets 504, not an endless wait.

mitmproxy has no read timeout for HTTP back ends and no connect timeout of its own (the OS's
is about two minutes). A watchdog checks every half second: a back-end connection still not
established after ``proxy.connect_timeout``, or a request whose response headers are overdue
after ``proxy.backend_timeout``, has its back-end connection cut, and ErrorPages turns the
resulting failure into a 504 naming the base.

The same deadline, counted again from the response headers, bounds a response body the gateway
holds back (below ``proxy.stream_threshold`` mitmproxy buffers the whole body before the client
sees a byte): a back end trickling an endless body would otherwise leave the client waiting with
nothing, for ever. A streamed body reaches the client as it comes, so the client sees it move
and can leave; when it does, mitmproxy closes the back-end connection.

The same watchdog closes an idle client's back-end connections after ``proxy.keepalive_timeout``
(nginx's upstream ``keepalive_timeout``): a terminal idle all shift holds one descriptor, not
two. The connection is marked closed before its reader is cancelled, so a request arriving in
the same instant opens a new back-end connection, as it does when a back end closes on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import connection, ctx, http
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import server_hooks

from addons._background import BackgroundTask
from addons import errorpages
from addons._context import current_config

logger = logging.getLogger("gateway.backend")

WATCHDOG_INTERVAL = 0.5


class BackendTimeout:
    def __init__(self) -> None:
        self._answers: dict[http.HTTPFlow, float] = {}
        self._bodies: dict[http.HTTPFlow, float] = {}
        self._connects: dict[connection.Server, tuple[connection.Client, float]] = {}
        # Requests in flight per client connection, and since when a client has had none.
        self._in_flight: dict[connection.Client, int] = {}
        self._idle_since: dict[connection.Client, float] = {}
        self._task = BackgroundTask(self._watch)

    def running(self) -> None:
        self._task.start()

    def done(self) -> None:
        self._task.stop()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._connects[data.server] = (data.client, time.monotonic() + current_config().proxy.connect_timeout)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._connects.pop(data.server, None)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._connects.pop(data.server, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        client = flow.client_conn
        self._in_flight[client] = self._in_flight.get(client, 0) + 1
        self._idle_since.pop(client, None)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        self._answers[flow] = time.monotonic() + current_config().proxy.backend_timeout

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._answers.pop(flow, None)
        self._bodies[flow] = time.monotonic() + current_config().proxy.backend_timeout

    def response(self, flow: http.HTTPFlow) -> None:
        self._bodies.pop(flow, None)
        if flow.websocket is None:  # a WebSocket keeps its back-end connection until it ends
            self._finished(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._answers.pop(flow, None)
        self._bodies.pop(flow, None)
        self._finished(flow)

    def client_disconnected(self, client: connection.Client) -> None:
        self._in_flight.pop(client, None)
        self._idle_since.pop(client, None)

    def _finished(self, flow: http.HTTPFlow) -> None:
        client = flow.client_conn
        if flow.metadata.get("gateway_keepalive_counted"):
            return  # error after response (a cut stream): counted once
        flow.metadata["gateway_keepalive_counted"] = True
        left = self._in_flight.get(client, 0) - 1
        if left > 0:
            self._in_flight[client] = left
            return
        self._in_flight.pop(client, None)
        if client.connected:
            self._idle_since[client] = time.monotonic()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            now = time.monotonic()
            for server, (client, deadline) in list(self._connects.items()):
                if now >= deadline:
                    del self._connects[server]
                    logger.warning("back end %s:%s: no connection within %.0f s; answering 504",
                                   *(server.address or ("?", "?")), current_config().proxy.connect_timeout)
                    self._cut(client, server)
            for flow, deadline in list(self._answers.items()):
                if now >= deadline:
                    del self._answers[flow]
                    logger.warning("back end %s:%s did not answer %s %s within %.0f s; answering 504",
                                   flow.request.host, flow.request.port, flow.request.method,
                                   flow.request.path.split("?", 1)[0], current_config().proxy.backend_timeout)
                    flow.metadata["gateway_verdict"] = "backend-error"
                    self._cut(flow.client_conn, flow.server_conn)
            for flow, deadline in list(self._bodies.items()):
                if flow.response is None or flow.response.stream or not flow.live:
                    del self._bodies[flow]  # streamed: the client sees it move
                elif now >= deadline:
                    del self._bodies[flow]
                    logger.warning("back end %s:%s did not finish the answer to %s %s within %.0f s of its "
                                   "headers; answering 504", flow.request.host, flow.request.port,
                                   flow.request.method, flow.request.path.split("?", 1)[0],
                                   current_config().proxy.backend_timeout)
                    flow.metadata["gateway_verdict"] = "backend-error"
                    self._cut(flow.client_conn, flow.server_conn)
            self._close_idle(now - current_config().proxy.keepalive_timeout)

    def _close_idle(self, idle_before: float) -> None:
        proxyserver = None
        for client, since in list(self._idle_since.items()):
            if since > idle_before:
                continue
            del self._idle_since[client]
            proxyserver = proxyserver or ctx.master.addons.get("proxyserver")
            handler = proxyserver.connections.get(client.id) if proxyserver else None
            if handler is None:
                continue
            for conn, io in list(handler.transports.items()):
                if conn is client or conn.state is ConnectionState.CLOSED or io.handler is None:
                    continue
                conn.state = ConnectionState.CLOSED  # not reused from now on
                io.handler.cancel("back-end keep-alive timeout")

    @staticmethod
    def _cut(client: connection.Client, server: connection.Server) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver else None
        io = handler.transports.get(server) if handler else None
        if io is None:
            return
        errorpages.mark_timed_out(client)
        if io.writer is not None:
            io.writer.close()
        elif io.handler is not None:
            io.handler.cancel("connect timeout")  # still connecting: abandon the attempt
