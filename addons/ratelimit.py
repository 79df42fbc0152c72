"""Request-rate limits (``limits.rate``/``limits.burst``, ``bases[].rate_limit``): 429 with
Retry-After past them. The bucket arithmetic and its rules are gateway/traffic/ratelimit.py; the
count lives in the store so workers and machines agree. A base without a rate costs nothing.

The store is the process's one store (gateway.store.handle): a Redis that went away and came
back is reconnected by it, and a check that cannot reach it answers 503 (fail closed) without a
line of its own — the store's health says once that it is down and once that it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mitmproxy import http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed
from addons.ipfilter import is_whitelisted
from addons.routing import client_ip
from gateway.config import GatewayConfig
from gateway.store import Store, StoreError, StoreUnavailable
from gateway.store.guarded import RETRY_AFTER
from gateway.store.handle import StoreHandle
from gateway.traffic import ratelimit

logger = logging.getLogger("gateway.ratelimit")

STORE_THREADS = 4
REFUSAL_LOG_INTERVAL = 10.0


class RateLimit:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._store: Store | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._default = None
        self._logged: dict[str, float] = {}

    def apply_config(self, cfg: GatewayConfig) -> None:
        self._default = cfg.limits.request_rate
        needed = any(ratelimit.effective_rate(b, self._default) for b in cfg.bases)
        self._store = self._stores.for_config(cfg) if needed else None
        if self._own_stores:
            self._stores.settle(cfg)
        if self._pool is None and needed:
            self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gateway-rate")

    def done(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._own_stores:
            self._stores.close()

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Any:
        listener = listener_to_check(flow)
        if listener is None:
            return None
        limit = ratelimit.effective_rate(listener.base, self._default)
        if limit is None or is_whitelisted(flow.client_conn):
            return None
        return self._take(flow, listener.base.id, listener.base.name, limit)

    async def _take(self, flow: http.HTTPFlow, base_id: str, base_name: str, limit: Any) -> None:
        store, pool = self._store, self._pool
        assert store is not None and pool is not None
        address = client_ip(flow)
        try:
            wait = await asyncio.get_running_loop().run_in_executor(
                pool, store.take_request, ratelimit.bucket_key(base_id, address), time.time(),
                limit.rate, limit.burst)
        except StoreError as e:
            if not isinstance(e, StoreUnavailable):
                logger.error("request-rate store failed; request refused: %s", e)
            # else: the store's health said it once (one ERROR when it went, one INFO when it is back)
            flow.metadata["gateway_verdict"] = "gateway-error"
            flow.metadata["gateway_reason"] = "request-rate store unavailable"
            deny(flow, 503, "503 Service Unavailable: the gateway cannot count requests right now; try again later.",
                 headers={"Retry-After": str(RETRY_AFTER)})
            return
        if wait <= 0:
            return
        header = ratelimit.retry_after_header(wait)
        flow.metadata["gateway_verdict"] = "rate-limited"
        flow.metadata["gateway_reason"] = f"over {limit.text} (burst {limit.burst})"
        now = time.monotonic()
        if now - self._logged.get(address, 0.0) >= REFUSAL_LOG_INTERVAL:
            if len(self._logged) > 10000:
                self._logged.clear()
            self._logged[address] = now
            logger.warning("rate limit: %s on base %r over %s (burst %d); answering 429 (logged once per %d s)",
                           address, base_name, limit.text, limit.burst, REFUSAL_LOG_INTERVAL,
                           extra={"event": "rate-limited", "client": address, "base": base_name})
        deny(flow, 429, f"429 Too Many Requests: more than {limit.text} from this address; retry in {header} s.",
             headers={"Retry-After": header})
