"""Waiting on a condition with a deadline: the one way tests wait (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    what: str,
    seconds: float = 20.0,
    poll_seconds: float = 0.02,
) -> T:
    """Poll `probe` until `accept` holds and return that value; fail the test at the deadline.

    The failure names `what` and the last value seen, so a timeout says what was missing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            pytest.fail(f"{what}: still {value!r} after {seconds} s")
        await asyncio.sleep(poll_seconds)  # poll interval of a deadline-bounded wait
