"""The engine tail on an in-memory bus: starts at the end, routes groups, stops on garbage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.results import EngineTail, about
from matcher.core import OrderBook
from ordermesh.bus.base import TopicSpec
from ordermesh.bus.memory import MemoryBus
from ordermesh.codec import encode_engine_event
from ordermesh.events import OrderCommand
from ordermesh.model import AccountId, ClientOrderId, OrderId, OrderStatus, Side
from ordermesh.runtime import FatalError
from tests.unit.gateway.test_outcomes import BTC, MARKET, USDT, cancel, order

pytestmark = pytest.mark.asyncio

TOPIC = "t.ordermesh.engine"


class Matcher:
    """Writes a book's events to the engine topic, one transaction per command."""

    def __init__(self, bus: MemoryBus) -> None:
        self.producer = bus.producer(transactional_id="matcher")
        self.book = OrderBook(MARKET)
        self.offset = 0

    async def apply(self, command: OrderCommand) -> None:
        self.offset += 1
        await self.producer.begin_transaction()
        for event in self.book.apply(command, self.offset):
            await self.producer.send(TOPIC, encode_engine_event(event), key=b"BTC-USDT")
        await self.producer.commit_transaction()


@pytest_asyncio.fixture
async def setup() -> AsyncIterator[tuple[MemoryBus, Matcher]]:
    bus = MemoryBus()
    await bus.create_topics([TopicSpec(TOPIC, 2)])
    matcher = Matcher(bus)
    await matcher.producer.start()
    yield bus, matcher
    await matcher.producer.stop()


@contextlib.asynccontextmanager
async def tailing(bus: MemoryBus) -> AsyncIterator[tuple[EngineTail, asyncio.Task[None]]]:
    tail = EngineTail(bus, TOPIC)
    await tail.start()
    task: asyncio.Task[None] = asyncio.create_task(tail.run())
    try:
        yield tail, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, FatalError):
            await task
        await tail.close()


async def test_a_waiter_gets_its_orders_group_and_nothing_before_the_start(setup) -> None:
    bus, matcher = setup
    await matcher.apply(order(1, Side.SELL, 100 * USDT, BTC, account=2))  # before the start
    async with tailing(bus) as (tail, _):
        assert tail.positioned
        with tail.placing(AccountId(1), ClientOrderId("c2")) as waiter:
            await matcher.apply(order(2, Side.BUY, 100 * USDT, BTC // 2))
            group = await waiter.wait_for(about(2), 5)
        assert group is not None
        assert [type(e.body).__name__ for e in group.events] == [
            "OrderAccepted",
            "TradeExecuted",
            "OrderDone",
        ]
        assert tail.recent(2) is group
        assert tail.recent(1) is None  # its group was before the tail started
        assert tail.ended(2) is OrderStatus.FILLED
        with tail.canceling(AccountId(2), OrderId(1), ClientOrderId("")) as waiter:
            await matcher.apply(cancel(1, account=2))
            canceled = await waiter.wait_for(about(1), 5)
        assert canceled is not None
        assert tail.ended(1) is OrderStatus.CANCELED
        with tail.placing(AccountId(1), ClientOrderId("c9")) as waiter:
            assert await waiter.wait_for(about(9), 0.05) is None  # never placed


async def test_a_record_that_is_not_an_engine_event_stops_the_tail(setup) -> None:
    bus, _ = setup
    async with tailing(bus) as (_, task):
        producer = bus.producer()
        await producer.start()
        await producer.send(TOPIC, b"\xff\xff not protobuf", key=b"BTC-USDT")
        await producer.stop()
        with pytest.raises(FatalError, match="stops rather than skip"):
            await asyncio.wait_for(task, 5)


async def test_a_topic_created_later_is_waited_for() -> None:
    bus = MemoryBus()
    async with tailing(bus) as (tail, task):
        assert not positioned(tail)
        await bus.create_topics([TopicSpec(TOPIC, 1)])
        for _ in range(500):  # five seconds at most
            if positioned(tail):
                break
            await asyncio.sleep(0.01)  # poll interval of a deadline-bounded wait
        assert positioned(tail)
        assert not task.done()


def positioned(tail: EngineTail) -> bool:
    return tail.positioned
