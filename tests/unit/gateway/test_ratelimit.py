"""The token bucket, on an injected clock."""

from __future__ import annotations

import pytest

from gateway.ratelimit import RateLimiter
from ordermesh.model import OrdermeshError, RejectReason


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _limited(limiter: RateLimiter, caller: str) -> bool:
    try:
        limiter.acquire(caller)
    except OrdermeshError as e:
        return e.reason is RejectReason.RATE_LIMITED
    return False


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=3, clock=clock)
    assert [_limited(limiter, "a") for _ in range(4)] == [False, False, False, True]
    assert not _limited(limiter, "b")  # one bucket per caller
    clock.now += 0.05  # half a token
    assert _limited(limiter, "a")
    clock.now += 0.05
    assert not _limited(limiter, "a")
    assert _limited(limiter, "a")
    clock.now += 60  # refills up to the burst, no more
    assert [_limited(limiter, "a") for _ in range(4)] == [False, False, False, True]


def test_the_refusal_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=4.0, burst=1, clock=clock)
    limiter.acquire("a")
    with pytest.raises(OrdermeshError, match="retry in 250 ms"):
        limiter.acquire("a")


def test_a_clock_going_back_refills_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.acquire("a")
    clock.now -= 10
    assert _limited(limiter, "a")


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bad_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(rate, burst)
