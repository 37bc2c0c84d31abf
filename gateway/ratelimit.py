"""A token bucket per caller: `rate` calls a second on average, bursts of up to `burst`.

The clock is injected (monotonic seconds), so the limiter is tested without waiting.
Buckets are kept per principal name; there is one per configured key at most.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ordermesh.model import OrdermeshError, RejectReason

_WHOLE_TOKEN = 1.0 - 1e-9  # float sums of elapsed time fall short of whole tokens by a hair


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Refuses a caller's call when its bucket is empty (RESOURCE_EXHAUSTED, RATE_LIMITED).

    Args:
        rate: tokens added per second.
        burst: the most tokens a bucket holds (and the tokens of a new bucket).
        clock: monotonic seconds.

    Raises:
        ValueError: rate not above 0, or burst below 1.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, was {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, was {burst}")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, caller: str) -> None:
        """Take one token from `caller`'s bucket.

        Raises:
            OrdermeshError: RATE_LIMITED, saying when the next call may succeed.
        """
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(float(self._burst), now)
        elapsed = max(now - bucket.updated, 0.0)
        bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._rate)
        bucket.updated = now
        if bucket.tokens >= _WHOLE_TOKEN:
            bucket.tokens = max(bucket.tokens - 1.0, 0.0)
            return
        wait_ms = math.ceil((1.0 - bucket.tokens) / self._rate * 1000)
        raise OrdermeshError(
            RejectReason.RATE_LIMITED,
            f"rate limit of {self._rate:g} calls per second (bursts of {self._burst}) reached"
            f" for {caller}; retry in {wait_ms} ms",
        )
