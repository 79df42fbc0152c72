"""Request-rate limits (``limits.rate``/``limits.burst``, ``bases[].rate_limit``): 429 with
Retry-After past them. The bucket arithmetic and its rules are gateway/traffic/ratelimit.py; the
count lives in the store so workers and machines agree. A base without a rate costs nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Hashable

from mitmproxy import http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed
from addons.ipfilter import is_whitelisted
from addons.routing import client_ip
from gateway.config import GatewayConfig
from gateway.store import Store, StoreError, open_for_gateway
from gateway.traffic import ratelimit

logger = logging.getLogger("gateway.ratelimit")

STORE_THREADS = 4
REFUSAL_LOG_INTERVAL = 10.0


class RateLimit:
    def __init__(self) -> None:
        self._store: Store | None = None
        self._store_key: Hashable = None
        self._pool: ThreadPoolExecutor | None = None
        self._default = None
        self._logged: dict[str, float] = {}

    def apply_config(self, cfg: GatewayConfig) -> None:
        self._default = cfg.limits.request_rate
        needed = any(ratelimit.effective_rate(b, self._default) for b in cfg.bases)
        key = (cfg.state_dir, cfg.store.backend, cfg.store.redis_url)
        if needed and (self._store is None or key != self._store_key):
            old = self._store
            self._store, self._store_key = open_for_gateway(cfg.state_dir, cfg.store, reports=False), key
            if old is not None:
                old.close()
        if self._pool is None and needed:
            self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gateway-rate")

    def done(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._store is not None:
            self._store.close()

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
        assert self._store is not None and self._pool is not None
        address = client_ip(flow)
        try:
            wait = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._store.take_request, ratelimit.bucket_key(base_id, address), time.time(),
                limit.rate, limit.burst)
        except StoreError as e:
            logger.error("request-rate store failed; request refused: %s", e)
            flow.metadata["gateway_verdict"] = "gateway-error"
            deny(flow, 503, "503 Service Unavailable: the gateway cannot count requests right now; try again later.")
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
