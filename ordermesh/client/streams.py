"""The server streams as async iterators that resubscribe by themselves.

A stream cut by UNAVAILABLE or RESOURCE_EXHAUSTED (the client read too slowly) is opened
again after a backoff, up to the client's `retries` times in a row without a message in
between. Market data checks the market's sequence: it goes up by one per engine event,
repeated on the messages of one event; any other step is a gap (something was lost), which
ends the subscription, and so does the gateway's ABORTED (it could not keep the stream's
book exact). A new subscription begins at once and its snapshot is yielded, so a LocalBook
that applies every event is whole again. A stream the server ends cleanly ends the iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Final, Protocol, TypeVar

import grpc

from ordermesh.client import decode
from ordermesh.client.errors import ClientError, StreamGap, from_rpc_error
from ordermesh.client.retry import RetryPolicy
from ordermesh.client.types import MarketEvent, OrderUpdate
from ordermesh.v1 import gateway_pb2 as pb

RESUBSCRIBE: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)
"""Stream endings after which the iterators subscribe again."""

M_co = TypeVar("M_co", covariant=True)


class StreamCall(AsyncIterable[M_co], Protocol[M_co]):
    """What a grpc.aio server-streaming call offers that the iterators use."""

    def cancel(self) -> bool:
        """End the call from this side."""
        ...


class _Resubscriber:
    """Counts failed subscriptions in a row, and waits between them."""

    def __init__(self, policy: RetryPolicy, jitter: Callable[[], float]) -> None:
        self._policy = policy
        self._jitter = jitter
        self._failures = 0
        self._gaps = 0

    def progressed(self, *, snapshot: bool = False) -> None:
        """A message arrived: the next failure is the first again (a gap only after a change)."""
        self._failures = 0
        if not snapshot:
            self._gaps = 0

    async def after(self, error: ClientError) -> None:
        """Wait before subscribing again, or raise when that may not be done.

        A lost continuity (StreamGap, or the gateway's ABORTED) resubscribes at once.

        Raises:
            StreamGap: continuity was lost on more than `retries` subscriptions in a row.
            ClientError: `error`, when it is not retried or the retries ran out.
        """
        if isinstance(error, StreamGap) or error.code == grpc.StatusCode.ABORTED:
            self._gaps += 1
            if self._gaps > self._policy.retries:
                raise StreamGap(
                    grpc.StatusCode.DATA_LOSS,
                    f"{error.message}; {self._gaps} subscriptions in a row lost continuity",
                    reason="SEQUENCE_GAP",
                ) from error
            return
        if error.code not in RESUBSCRIBE or self._failures >= self._policy.retries:
            raise error
        await asyncio.sleep(self._policy.delay(self._failures, self._jitter()))
        self._failures += 1


async def order_updates(
    open_call: Callable[[], StreamCall[pb.StreamOrderUpdatesResponse]],
    policy: RetryPolicy,
    *,
    jitter: Callable[[], float] = random.random,
) -> AsyncIterator[OrderUpdate]:
    """Order updates as they come, across resubscribes.

    Updates that happen while the stream is down are not replayed by the gateway: after a
    resubscribe, `list_open_orders` or `get_order` tell where each order stands.

    Raises:
        ClientError: a failure that is not retried, or the last one when retries ran out.
    """
    resubscriber = _Resubscriber(policy, jitter)
    while True:
        call = open_call()
        try:
            async for message in call:
                resubscriber.progressed()
                yield decode.order_update(message)
            return
        except grpc.RpcError as e:
            error = from_rpc_error(e)
        finally:
            call.cancel()
        await resubscriber.after(error)


def _in_sequence(sequence: int, last: int | None) -> bool:
    """True for the next message in sequence, False for one already seen.

    The messages of one engine event share its sequence; the next event's carry the next.

    Raises:
        StreamGap: any other step (or a change before the snapshot).
    """
    if last is not None and last <= sequence <= last + 1:
        return True
    if last is not None and sequence < last:
        return False
    raise StreamGap(
        grpc.StatusCode.DATA_LOSS,
        f"market data went from sequence {last} to {sequence}",
        reason="SEQUENCE_GAP",
    )


async def _subscription(
    call: StreamCall[pb.StreamMarketDataResponse], resubscriber: _Resubscriber
) -> AsyncGenerator[MarketEvent, None]:
    """The events of one subscription, its sequence checked."""
    last: int | None = None
    async for message in call:
        snapshot = message.HasField("snapshot")
        if not snapshot and not _in_sequence(message.sequence, last):
            continue
        last = message.sequence
        resubscriber.progressed(snapshot=snapshot)
        yield decode.market_event(message)


async def market_events(
    open_call: Callable[[], StreamCall[pb.StreamMarketDataResponse]],
    policy: RetryPolicy,
    *,
    jitter: Callable[[], float] = random.random,
) -> AsyncIterator[MarketEvent]:
    """Snapshot, then deltas and trades in sequence; a new snapshot after every resync.

    Raises:
        StreamGap: continuity was lost on `retries` + 1 subscriptions in a row, each time
            before any delta or trade could follow the snapshot.
        ClientError: a failure that is not retried, or the last one when retries ran out.
    """
    resubscriber = _Resubscriber(policy, jitter)
    while True:
        call = open_call()
        try:
            async with contextlib.aclosing(_subscription(call, resubscriber)) as events:
                async for event in events:
                    yield event
            return
        except grpc.RpcError as e:
            error = from_rpc_error(e)
        except StreamGap as gap:
            error = gap
        finally:
            call.cancel()
        await resubscriber.after(error)
