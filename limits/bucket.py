"""A token bucket in Redis: ``capacity`` tokens, refilled continuously at ``refill_per_second``.

For per-tenant rates; the cost of a take is tokens, as in the budget. The refill arithmetic runs in
``lua/bucket.lua`` on Redis's clock, so every process agrees on the level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from limits.budget import positive_int
from limits.errors import CostTooLarge, InvalidArgument
from limits.keys import bucket_key
from limits.scripts import scripts_for

# Redis's PEXPIRE takes a 64-bit integer; a near-zero refill rate must not overflow it.
_MAX_TTL_MS = 2**40


@dataclass(frozen=True, slots=True)
class BucketResult:
    allowed: bool
    remaining: float  # tokens left in the bucket after this take (or after the refused one)
    retry_after: float  # seconds until the same cost would be allowed; 0.0 when allowed


def ttl_ms(capacity: int, refill_per_second: float) -> int:
    """How long an idle bucket's key must live: after it refills from empty, a missing key reads the same."""
    return min(_MAX_TTL_MS, math.ceil(capacity / refill_per_second * 1000) + 1000)


class TokenBucket:
    """Token buckets in Redis, any number of them by key. Thread-safe; share one per client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts = scripts_for(client)

    def take(self, key: str, cost: int, *, capacity: int, refill_per_second: float) -> BucketResult:
        """Take ``cost`` tokens if the bucket holds them; else take nothing and say when to retry.
        A cost above ``capacity`` raises ``CostTooLarge``: no wait would ever be enough."""
        redis_key = bucket_key(key)
        positive_int(cost, "cost")
        positive_int(capacity, "capacity")
        if (
            isinstance(refill_per_second, bool)
            or not isinstance(refill_per_second, int | float)
            or not math.isfinite(refill_per_second)
            or refill_per_second <= 0
        ):
            raise InvalidArgument(f"refill_per_second must be a finite number > 0, got {refill_per_second!r}")
        if cost > capacity:
            raise CostTooLarge(cost, capacity, key=key)
        allowed, remaining, retry_after = self._scripts.bucket(
            [redis_key], [cost, capacity, repr(float(refill_per_second)), ttl_ms(capacity, refill_per_second)]
        )
        return BucketResult(bool(int(allowed)), float(remaining), float(retry_after))
