"""The fan-out of the engine tail: who gets what, bounded queues, and how streams end."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeVar

import grpc
import pytest

from gateway.outcomes import CommandGroup
from gateway.results import EngineTail
from gateway.stream_hub import EndLabel, StreamEnded, StreamHub, Subscription
from matcher.core import OrderBook
from ordermesh.bus.base import TopicSpec
from ordermesh.bus.memory import MemoryBus
from ordermesh.events import OrderCommand
from ordermesh.model import AccountId, OrderStatus, Side, Symbol
from ordermesh.runtime import FatalError
from tests.unit.gateway.test_outcomes import BTC, MARKET, USDT, cancel, order
from tests.unit.gateway.test_results import TOPIC, Matcher
from tests.unit.gateway.test_stream_book import MARKETS

pytestmark = pytest.mark.asyncio

T = TypeVar("T")

SYMBOL = Symbol("BTC-USDT")


def groups(*, extra: bool = False) -> list[CommandGroup]:
    """Account 2 rests a sell, account 1 takes half of it, account 2 cancels the rest.

    With `extra`, account 3 then rests a buy.
    """
    book = OrderBook(MARKET)
    commands: list[OrderCommand] = [
        order(1, Side.SELL, 100 * USDT, BTC, account=2),
        order(2, Side.BUY, 100 * USDT, BTC // 2, account=1),
        cancel(1, account=2),
    ]
    if extra:
        commands.append(order(3, Side.BUY, 90 * USDT, BTC, account=3))
    return [
        CommandGroup(SYMBOL, tuple(book.apply(command, offset)))
        for offset, command in enumerate(commands, 1)
    ]


async def drain(subscription: Subscription[T]) -> list[T]:
    """Everything queued (the hub queues synchronously, so this is all it was offered)."""
    return [await subscription.get() for _ in range(len(subscription))]


async def test_each_account_gets_its_own_orders_updates_in_order() -> None:
    hub = StreamHub(MARKETS, 100)
    with hub.orders(AccountId(1), None) as mine, hub.orders(AccountId(2), None) as theirs:
        for group in groups():
            hub.group(group)
        got_mine = [
            (u.order.order_id, u.order.status, u.fill is not None) for u in await drain(mine)
        ]
        got_theirs = [
            (u.order.order_id, u.order.status, u.fill is not None) for u in await drain(theirs)
        ]
    assert got_mine == [
        (2, OrderStatus.NEW, False),
        (2, OrderStatus.FILLED, True),
        (2, OrderStatus.FILLED, False),
    ]
    assert got_theirs == [
        (1, OrderStatus.NEW, False),
        (1, OrderStatus.PARTIALLY_FILLED, True),
        (1, OrderStatus.CANCELED, False),
    ]
    assert hub.subscriptions() == 0
    assert hub.live_orders == 0


async def test_a_symbol_filter_keeps_other_markets_out() -> None:
    hub = StreamHub(MARKETS, 100)
    with hub.orders(AccountId(1), Symbol("ETH-USDT")) as other_market:
        for group in groups():
            hub.group(group)
        assert await drain(other_market) == []


async def test_a_subscriber_that_falls_behind_ends_without_holding_the_others() -> None:
    hub = StreamHub(MARKETS, 3)  # the market gets 3 groups, then one more; account 1 gets 3
    with hub.market(SYMBOL) as slow, hub.orders(AccountId(1), None) as other:
        for group in groups(extra=True):
            hub.group(group)
        with pytest.raises(StreamEnded) as ended:
            await slow.get()
        assert ended.value.end.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ended.value.end.label is EndLabel.FELL_BEHIND
        assert len(slow) == 0
        assert hub.subscriptions() == 1  # the slow one is gone; the other goes on
        assert other.end is None
        assert len(await drain(other)) == 3


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (None, grpc.StatusCode.UNAVAILABLE),
        (ConnectionError("bus lost"), grpc.StatusCode.UNAVAILABLE),
        (FatalError("sequence gap"), grpc.StatusCode.ABORTED),
    ],
)
async def test_a_stopped_tail_ends_every_stream_and_refuses_new_ones(
    error: BaseException | None, code: grpc.StatusCode
) -> None:
    hub = StreamHub(MARKETS, 10)
    with hub.market(SYMBOL) as market, hub.orders(AccountId(1), None) as updates:
        waiting = asyncio.create_task(updates.get())
        await asyncio.sleep(0)  # one turn of the loop, so that it is waiting when the end comes
        hub.stopped(error)
        for subscription in (market, updates):
            with pytest.raises(StreamEnded) as ended:
                await subscription.get()
            assert ended.value.end.code is code
        with pytest.raises(StreamEnded):
            await waiting
    with pytest.raises(StreamEnded), hub.market(SYMBOL):
        pass


async def test_a_broken_chain_read_by_the_real_tail_ends_the_streams_aborted() -> None:
    bus = MemoryBus()
    await bus.create_topics([TopicSpec(TOPIC, 2)])
    matcher = Matcher(bus)
    await matcher.producer.start()
    tail = EngineTail(bus, TOPIC)
    hub = StreamHub(MARKETS, 100)
    tail.listen(hub)
    await tail.start()
    task = asyncio.create_task(tail.run())
    try:
        with hub.market(SYMBOL) as market:
            await matcher.apply(order(1, Side.SELL, 100 * USDT, BTC, account=2))
            await matcher.apply(order(2, Side.SELL, 101 * USDT, BTC, account=2))
            assert (await market.get()).last_sequence == 1
            assert (await market.get()).last_sequence == 2
            # The same commands again: a second book restarts at sequence 1, a gap backwards.
            matcher.book = OrderBook(MARKET)
            await matcher.apply(order(3, Side.SELL, 100 * USDT, BTC, account=2))
            with pytest.raises(StreamEnded) as ended:
                await market.get()
            assert ended.value.end.code is grpc.StatusCode.ABORTED
            assert ended.value.end.label is EndLabel.LOG_BROKEN
        with pytest.raises(FatalError):
            await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, FatalError):
            await task
        await tail.close()
        await matcher.producer.stop()
