"""When a failed call is tried again, and how long to wait before it.

Only what cannot have done harm, or whose repetition the gateway recognises, is retried:
UNAVAILABLE for every call (a PlaceOrder is resent with the same client_order_id, a Deposit
with the same reference_id, so the gateway answers with the original instead of doing it
twice), and DEADLINE_EXCEEDED for reads only (a write that timed out is the caller's to
look up). The waits grow exponentially up to a cap, with jitter so that many clients cut
off together do not come back in step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import grpc

from ordermesh.client.errors import from_rpc_error

T = TypeVar("T")


class CallKind(Enum):
    """What a call does, which decides what may be retried."""

    READ = "read"
    """Changes nothing: UNAVAILABLE and DEADLINE_EXCEEDED are retried."""
    KEYED_WRITE = "keyed write"
    """Changes state under an idempotency key: UNAVAILABLE is retried with the same key."""


_ALWAYS = frozenset({grpc.StatusCode.UNAVAILABLE})
_READS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how patiently calls are retried.

    Attributes:
        retries: attempts after the first (0: never retry).
        backoff: the wait before the first retry, in seconds; doubled for each next one.
        max_backoff: the longest wait between two attempts.
    """

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, was {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(
                f"retry_backoff and retry_max_backoff must be >= 0,"
                f" were {self.backoff} and {self.max_backoff}"
            )

    def retryable(self, code: grpc.StatusCode, kind: CallKind) -> bool:
        """Whether a call of `kind` that failed with `code` may be tried again."""
        return code in (_READS if kind is CallKind.READ else _ALWAYS)

    def delay(self, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number `retry` (0 for the first).

        Args:
            retry: 0 before the first retry, 1 before the second, ...
            jitter: a number in [0, 1); the wait is between half and all of the cap.
        """
        ceiling = min(self.max_backoff, self.backoff * float(2 ** min(retry, 32)))
        return ceiling * (0.5 + jitter / 2)


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    kind: CallKind,
    *,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run `attempt` until it succeeds, fails for good, or the retries are spent.

    `attempt` must send the same request every time (same client_order_id/reference_id).

    Raises:
        ClientError: the typed error of the last failure.
    """
    retry = 0
    while True:
        try:
            return await attempt()
        except grpc.RpcError as e:
            error = from_rpc_error(e)
            if retry >= policy.retries or not policy.retryable(error.code, kind):
                raise error from e
        await asyncio.sleep(policy.delay(retry, jitter()))
        retry += 1
