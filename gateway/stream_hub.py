"""The fan-out of the engine tail to the live streams: bounded subscriptions, one end status.

The engine tail (`gateway.results`) hands every complete command group to `StreamHub.group`
on its own task; the hub works out once what the group tells (`gateway.stream_state`) and
offers it to each subscription it concerns: the order update streams of the accounts whose
orders it touched, the market data streams of its symbol. Offering never waits: each
subscription holds a bounded queue, and one that is full is ended (RESOURCE_EXHAUSTED,
"fell behind") rather than slowing the tail, and so every other stream, or growing memory.

When the tail stops, every subscription ends at once with a status the client can act on
(see `StreamEnd`), and the hub refuses new ones: no stream goes on silently from a tail
that no longer reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import grpc
import structlog

from gateway.outcomes import CommandGroup
from gateway.stream_state import GroupChanges, LiveOrders, OrderUpdate
from ordermesh.markets import MarketTable
from ordermesh.model import AccountId, RejectReason, Symbol
from ordermesh.runtime import FatalError

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class EndLabel(StrEnum):
    """Why a stream ended, as the streams-ended metric labels it."""

    CLIENT_GONE = "client_gone"
    """The client cancelled or disconnected."""
    COMPLETED = "completed"
    """OrderEntry: the client closed its side and every request was answered."""
    REFUSED = "refused"
    """Not started: authentication, rate limit, a bad argument, or the tail not reading."""
    FELL_BEHIND = "fell_behind"
    TAIL_STOPPED = "tail_stopped"
    LOG_BROKEN = "log_broken"
    RESYNC = "resync"
    DEPENDENCY = "dependency"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The status a stream ends with, and what the client should do about it.

    UNAVAILABLE (reason UNAVAILABLE): the gateway cannot follow the engine log now (its
    tail stopped, the gateway is stopping, a dependency is unreachable); resubscribe after
    a short backoff, to this or another replica. ABORTED (reason UNAVAILABLE): the stream's
    continuity is broken (the log showed a gap or a broken hash chain, or a book change
    could not be placed); resubscribe and resync at once. RESOURCE_EXHAUSTED (reason
    OVERLOADED): the client read too slowly and the stream fell behind; resubscribe and
    read faster. After any end, a client resyncs: StreamMarketData starts again with a
    snapshot; StreamOrderUpdates clients take state from ListOpenOrders again.
    """

    code: grpc.StatusCode
    reason: RejectReason
    message: str
    label: EndLabel


def fell_behind(capacity: int) -> StreamEnd:
    """The end of a subscription whose queue filled up."""
    return StreamEnd(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        RejectReason.OVERLOADED,
        f"the stream fell behind: {capacity} messages were waiting for the client to read"
        " them; resubscribe (and resync) and read faster",
        EndLabel.FELL_BEHIND,
    )


def tail_ended(error: BaseException | None) -> StreamEnd:
    """The end of every subscription when the engine tail stops (with `error`, or closed)."""
    if isinstance(error, FatalError):
        return StreamEnd(
            grpc.StatusCode.ABORTED,
            RejectReason.UNAVAILABLE,
            f"the gateway stopped following the engine log: {error}; resubscribe to another"
            " gateway and resync",
            EndLabel.LOG_BROKEN,
        )
    cause = "the gateway is stopping" if error is None else f"the engine tail stopped: {error!r}"
    return StreamEnd(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.UNAVAILABLE,
        f"{cause}; resubscribe shortly and resync",
        EndLabel.TAIL_STOPPED,
    )


class StreamEnded(Exception):
    """Raised by `Subscription.get` once the subscription has ended."""

    def __init__(self, end: StreamEnd) -> None:
        super().__init__(end.message)
        self.end = end


class Subscription(Generic[_T]):
    """A bounded queue from the tail to one stream; ended once, with a `StreamEnd`.

    Args:
        capacity: the most items it holds before it ends with `fell_behind`.
        accept: which offered items it takes.
    """

    def __init__(self, capacity: int, accept: Callable[[_T], bool] = lambda _item: True) -> None:
        self._capacity = capacity
        self._accept = accept
        self._items: deque[_T] = deque()
        self._ready = asyncio.Event()
        self.end: StreamEnd | None = None
        """Set once the subscription has ended."""
        self.on_end: Callable[[Subscription[_T]], None] = lambda _subscription: None
        """Called once when it ends (the hub unregisters it)."""

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: _T) -> None:
        """Queue `item` if it is wanted; end the subscription when it is full."""
        if self.end is not None or not self._accept(item):
            return
        if len(self._items) >= self._capacity:
            self.finish(fell_behind(self._capacity))
            return
        self._items.append(item)
        self._ready.set()

    def finish(self, end: StreamEnd) -> None:
        """End the subscription (first end wins); what is queued is dropped."""
        if self.end is not None:
            return
        self.end = end
        self._items.clear()
        self._ready.set()
        self.on_end(self)

    async def get(self) -> _T:
        """The next item, waiting for one.

        Raises:
            StreamEnded: the subscription has ended.
        """
        while not self._items:
            if self.end is not None:
                raise StreamEnded(self.end)
            self._ready.clear()
            await self._ready.wait()
        if self.end is not None:
            raise StreamEnded(self.end)
        return self._items.popleft()


class StreamHub:
    """Routes command groups to subscriptions by account and by symbol.

    Args:
        markets: the market table.
        capacity: the queue size of each subscription.
    """

    def __init__(self, markets: MarketTable, capacity: int) -> None:
        self._markets = markets
        self._capacity = capacity
        self._live = LiveOrders(markets)
        self._by_account: dict[AccountId, set[Subscription[OrderUpdate]]] = {}
        self._by_symbol: dict[Symbol, set[Subscription[GroupChanges]]] = {}
        self.ended: StreamEnd | None = None
        """Set once the tail has stopped: no subscription is taken any more."""

    @property
    def live_orders(self) -> int:
        """Orders followed (seen by the tail, not ended)."""
        return len(self._live)

    def group(self, group: CommandGroup) -> None:
        """Take one complete command group from the tail (never waits, never raises)."""
        try:
            changes = self._live.apply(group)
        except (ValueError, KeyError, TypeError) as e:
            log.error("engine events the streams cannot follow", symbol=group.symbol, error=str(e))
            self._live = LiveOrders(self._markets)
            self._end_all(
                StreamEnd(
                    grpc.StatusCode.ABORTED,
                    RejectReason.UNAVAILABLE,
                    f"the gateway could not follow the events of {group.symbol}: {e};"
                    " resubscribe and resync",
                    EndLabel.INTERNAL,
                )
            )
            return
        for update in changes.updates:
            for subscription in list(self._by_account.get(update.order.account_id, ())):
                subscription.offer(update)
        for follower in list(self._by_symbol.get(changes.symbol, ())):
            follower.offer(changes)

    def stopped(self, error: BaseException | None) -> None:
        """The tail stopped (`error`), or is closing (None): end every stream, take no more."""
        end = tail_ended(error)
        if self.ended is None:
            self.ended = end
        self._end_all(end)

    def _end_all(self, end: StreamEnd) -> None:
        every = [s for subs in self._by_account.values() for s in subs]
        markets = [s for subs in self._by_symbol.values() for s in subs]
        for subscription in every:
            subscription.finish(end)
        for market_subscription in markets:
            market_subscription.finish(end)

    @contextlib.contextmanager
    def orders(
        self, account: AccountId, symbol: Symbol | None
    ) -> Iterator[Subscription[OrderUpdate]]:
        """A subscription to the updates of `account`'s orders (of `symbol` only, if given).

        Raises:
            StreamEnded: the tail has stopped.
        """

        def wanted(update: OrderUpdate) -> bool:
            return symbol is None or update.order.symbol == symbol

        with _registered(
            self, self._by_account, account, Subscription(self._capacity, wanted)
        ) as s:
            yield s

    @contextlib.contextmanager
    def market(self, symbol: Symbol) -> Iterator[Subscription[GroupChanges]]:
        """A subscription to the changes of one market.

        Raises:
            StreamEnded: the tail has stopped.
        """
        with _registered(self, self._by_symbol, symbol, Subscription(self._capacity)) as s:
            yield s

    def subscriptions(self) -> int:
        """Subscriptions registered now."""
        return sum(map(len, self._by_account.values())) + sum(map(len, self._by_symbol.values()))


_K = TypeVar("_K")


@contextlib.contextmanager
def _registered(
    hub: StreamHub, table: dict[_K, set[Subscription[_T]]], key: _K, subscription: Subscription[_T]
) -> Iterator[Subscription[_T]]:
    if hub.ended is not None:
        raise StreamEnded(hub.ended)

    def remove(ended: Subscription[_T]) -> None:
        subscriptions = table.get(key)
        if subscriptions is not None:
            subscriptions.discard(ended)
            if not subscriptions:
                del table[key]

    subscription.on_end = remove
    table.setdefault(key, set()).add(subscription)
    try:
        yield subscription
    finally:
        remove(subscription)
