"""Refuses a client by its IP address the moment it connects, before any TLS handshake.

The seed's whitelist.dat / blacklist.dat per base, plus the global lists of the configuration;
the rules live in ``gateway.iplist``. Setting ``client.error`` in ``client_connected`` makes
mitmproxy close the socket at once, so a refused device never gets a ServerHello.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import connection

from addons._background import BackgroundTask
from addons._context import listener_of
from addons._guard import fail_closed
from gateway.config import GatewayConfig
from gateway.iplist import POLL_INTERVAL, IpLists

logger = logging.getLogger("gateway.ipfilter")

# The instance the runner loaded; the auth/throttle and metrics addons ask it through the
# module functions below instead of holding a reference to it.
_active: IpFilter | None = None


class IpFilter:
    def __init__(self) -> None:
        self.lists = IpLists()
        self._watch_task = BackgroundTask(self._watch)

    def apply_config(self, cfg: GatewayConfig) -> None:
        global _active
        self.lists.configure(cfg)
        _active = self

    def running(self) -> None:
        self._watch_task.start()

    def done(self) -> None:
        self._watch_task.stop()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                # Compiling a big list takes a second or two: off the event loop, so open
                # connections keep flowing; the finished list is swapped in whole.
                await asyncio.to_thread(self.lists.poll)
            except Exception:
                logger.exception("checking the IP list files failed; the lists in force stay")

    @fail_closed
    def client_connected(self, client: connection.Client) -> None:
        if client.error:
            return  # already refused by an earlier addon
        host = client.peername[0] if client.peername else ""
        listener = listener_of(client)
        if listener is None:
            client.error = "refused: this port is no longer served by the gateway"
            logger.warning("refused %s: port %s is no longer configured", host,
                           client.sockname[1] if client.sockname else "?",
                           extra={"event": "ip-denied", "client": host})
            return
        base = listener.base
        decision = self.lists.decide(base.id, host)
        if decision.allowed:
            return
        client.error = f"refused by IP list ({decision.verdict})"
        logger.warning("refused %s on base %r (%s): %s", host, base.name, base.id, decision.describe(),
                       extra={"event": "ip-denied", "base": base.name, "base_id": base.id, "client": host,
                              "verdict": "denied-ip", "reason": decision.verdict,
                              "file": str(decision.match.path) if decision.match else None,
                              "line": decision.match.line if decision.match else None})


def is_whitelisted(client: connection.Client) -> bool:
    """True if the client's address is on a whitelist of the base it connected to (never throttled)."""
    if _active is None or not client.peername:
        return False
    listener = listener_of(client)
    if listener is None:
        return False
    return _active.lists.is_whitelisted(listener.base.id, client.peername[0])


def list_sizes() -> dict[str, int]:
    """Entries per list file in force, keyed by file path."""
    return _active.lists.sizes() if _active is not None else {}


