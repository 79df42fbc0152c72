"""Request-rate limits per base and client address: nginx's ``limit_req`` (leaky bucket, ``nodelay``).

Each (base, address) has a bucket that drains at ``rate`` requests per second; a request adds
one. A request that would fill it past ``burst`` is refused with 429 and a Retry-After of the
seconds until it has room — and, as in nginx, a refused request is not counted. The buckets live
in the store (``Store.take_request``), so all workers of a machine, and all machines sharing a
Redis store, count together. Whitelisted addresses are never limited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config import BaseConfig, RequestRate

# A bucket unused for this long past empty is forgotten (the store expires it).
IDLE_GRACE = 60.0


def effective_rate(base: BaseConfig, default: RequestRate | None) -> RequestRate | None:
    """The base's own rate_limit, none when it says off, else limits.rate/burst."""
    if base.rate_limit is False:
        return None
    if isinstance(base.rate_limit, RequestRate):
        return base.rate_limit
    return default


def bucket_key(base_id: str, address: str) -> str:
    return f"{base_id}|{address}"


@dataclass(frozen=True)
class Bucket:
    excess: float  # requests in the bucket beyond the one being served (nginx's "excess")
    at: float      # when excess was last computed


def take(bucket: Bucket | None, now: float, limit: RequestRate) -> tuple[Bucket | None, float]:
    """(new bucket or None when refused, seconds to wait when refused). The reference the
    stores' atomic versions (SQLite transaction, Redis Lua) follow step for step."""
    excess = 0.0 if bucket is None else max(0.0, bucket.excess - limit.rate * max(0.0, now - bucket.at) + 1.0)
    if excess > limit.burst:
        return None, retry_after(excess, limit)
    return Bucket(excess, now), 0.0


def retry_after(excess: float, limit: RequestRate) -> float:
    """Seconds until a request fits again."""
    return (excess - limit.burst) / limit.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
