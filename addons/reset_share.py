"""HTTP/2 stream resets per address over every worker and machine (issue 24 point 5).

Each process counts resets and bans in its own ``reset_ledger`` at once (addons/_engine_patches.py);
this addon sends what it counted to the store every ``RESET_SHARE_INTERVAL`` in one call
(``Store.add_strikes``: one round trip per interval, whatever the number of resets) and takes back
every ban in force, so an address that spreads its resets over two workers or two gateways on one
Redis is counted whole, and refused by all of them. The bans are in the store: ``gateway bans list``
shows them, ``gateway bans lift`` ends them everywhere.

The store is down: the count and the bans of this process go on alone (each worker still refuses
what it saw, as before sharing), the bans already known stay until they end, and the ones made
here reach the store once it is back. Nothing is let through that a single worker would refuse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from addons import _engine_patches
from addons._background import BackgroundTask
from addons.limits import security_event
from gateway.config import GatewayConfig
from gateway.store import Store, StoreError
from gateway.store.handle import StoreHandle
from gateway.traffic.limits import RESET_ADDRESS_FACTOR, RESET_BAN, RESET_KEY, RESET_SHARE_INTERVAL, RESET_WINDOW

logger = logging.getLogger("gateway.limits")


class ResetShare:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._store: Store | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gateway-resets")
        self._limit = 0
        self._task = BackgroundTask(self._share)

    def apply_config(self, cfg: GatewayConfig) -> None:
        self._store = self._stores.for_config(cfg)
        if self._own_stores:
            self._stores.settle(cfg)
        self._limit = RESET_ADDRESS_FACTOR * cfg.limits.http2_max_resets

    def running(self) -> None:
        self._task.start()

    def done(self) -> None:
        self._task.stop()
        self._pool.shutdown(wait=False)
        self._store = None
        if self._own_stores:
            self._stores.close()

    async def _share(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RESET_SHARE_INTERVAL)
            try:
                await self.share_once(loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the sharing for good; each worker still counts alone
                logger.exception("sharing HTTP/2 reset counts failed")

    async def share_once(self, loop: asyncio.AbstractEventLoop) -> None:
        ledger, store, limit = _engine_patches.reset_ledger, self._store, self._limit
        if store is None:
            return
        counts, fresh = ledger.take_pending()
        try:
            banned, bans = await loop.run_in_executor(
                self._pool, store.add_strikes, counts, time.time(), RESET_WINDOW, limit, RESET_BAN)
        except StoreError:
            # The store's health says it once (the process's one store); this process goes on alone.
            ledger.give_back(counts, fresh, limit)
            return
        ledger.adopt(bans, time.monotonic(), time.time())
        for key in banned:
            address = key[len(RESET_KEY):]
            if address not in fresh:  # this process's own ban was logged when it was made
                security_event("reset-ban", address,
                               f"more than {limit} stream resets in {RESET_WINDOW:.0f} s over its connections to "
                               f"all workers and machines; new connections refused for {RESET_BAN:.0f} s")
