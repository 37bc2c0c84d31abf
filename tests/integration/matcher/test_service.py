"""The matcher service in this process, on the in-memory bus and on real Kafka.

Commands go in through ordermesh.orders as ubscore would log them; what comes out of
ordermesh.engine (read_committed) must be exactly a straight run of a fresh engine over the
same commands, and the gRPC views must show the live books.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from matcher.bootstrap import MatcherService, build
from ordermesh.amounts import fee
from ordermesh.bus.base import Bus, BusError, Consumer, Producer, TopicSpec
from ordermesh.bus.memory import MemoryBus
from ordermesh.bus.topics import partition_for
from ordermesh.codec import decode_engine_event
from ordermesh.events import OrderAccepted, OrderDone, TradeExecuted
from ordermesh.grpcx.errors import reason_of
from ordermesh.model import OrderStatus, RejectReason, Side, Symbol
from ordermesh.runtime import EXIT_FATAL, EXIT_FENCED
from ordermesh.snapshots import SNAPSHOTS, BusSnapshotStore
from ordermesh.v1 import matcher_pb2 as pb
from tests.integration.matcher.harness import (
    DEADLINE_SECONDS,
    MARKETS,
    NOT_SERVING,
    PARTITIONS,
    SERVING,
    SYMBOLS,
    check_exact,
    committed_offsets,
    engine_topic,
    eventually,
    health_status,
    matcher_stub,
    orders_topic,
    owners,
    produce,
    read_engine,
    running,
    serving,
    settings,
    split_between_two,
    straight_run,
    stream,
    wait_processed,
)
from tests.unit.matcher.helpers import btc, limit, usdt

pytestmark = pytest.mark.asyncio

SELLER, BUYER = 7, 8


async def refused(call: Any) -> tuple[grpc.StatusCode, RejectReason | None, str]:
    """Await a call that must fail: its status code, ErrorInfo reason and message."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code(), await reason_of(call), failure.value.details() or ""


async def test_crossing_orders_trade_and_the_book_serves_the_rest(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file)
    async with running(bus, config) as (service, _):
        assert await health_status(service.port) == SERVING
        sell = limit(1, Side.SELL, usdt(100), btc("0.5"), account=SELLER)
        buy = limit(2, Side.BUY, usdt(101), btc("0.2"), account=BUYER)
        produced = await produce(bus, orders_topic(prefix), [sell, buy])
        await wait_processed(bus, config.group_id, orders_topic(prefix), produced)
        published = await read_engine(bus, engine_topic(prefix))
        check_exact(published, straight_run(produced))

        events = [decode_engine_event(record.value) for record in published["BTC-USDT"]]
        assert [type(e.body) for e in events] == [
            OrderAccepted, OrderAccepted, TradeExecuted, OrderDone
        ]  # fmt: skip
        assert [e.sequence for e in events] == [1, 2, 3, 4]
        assert [e.input_offset for e in events] == [produced[0][1].offset] + [
            produced[1][1].offset
        ] * 3
        trade = events[2].body
        assert isinstance(trade, TradeExecuted)
        assert (trade.maker_order_id, trade.taker_order_id, trade.taker_side) == (1, 2, Side.BUY)
        assert (trade.price, trade.quantity, trade.quote_quantity) == (
            usdt(100), btc("0.2"), usdt(20)
        )  # fmt: skip
        # The seller (maker, 10 bps) receives quote; the buyer (taker, 20 bps) receives base.
        assert trade.maker_fee == fee(usdt(20), 10) == usdt("0.02")
        assert trade.taker_fee == fee(btc("0.2"), 20) == btc("0.0004")
        done = events[3].body
        assert isinstance(done, OrderDone)
        assert (done.order_id, done.status, done.filled_quantity) == (
            2, OrderStatus.FILLED, btc("0.2")
        )  # fmt: skip

        async with matcher_stub(service.port) as stub:
            request = pb.MatcherGetOrderBookRequest(symbol="BTC-USDT", depth=5)
            book = await stub.GetOrderBook(request)
            assert book.symbol == "BTC-USDT"
            assert book.sequence == 4
            assert list(book.bids) == []
            assert list(book.asks) == [
                pb.BookLevel(price=usdt(100), quantity=btc("0.3"), order_count=1)
            ]
            order = (
                await stub.GetOrder(pb.MatcherGetOrderRequest(symbol="BTC-USDT", order_id=1))
            ).order
            assert (order.order_id, order.account_id, Side(order.side)) == (1, SELLER, Side.SELL)
            assert (order.quantity, order.remaining_quantity, order.filled_quote_quantity) == (
                btc("0.5"), btc("0.3"), usdt(20)
            )  # fmt: skip

            gone = stub.GetOrder(pb.MatcherGetOrderRequest(symbol="BTC-USDT", order_id=2))
            code, reason, message = await refused(gone)
            assert (code, reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER)
            assert "order 2 is not on the BTC-USDT book" in message

            unknown = stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol="DOGE-USDT"))
            code, reason, message = await refused(unknown)
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, RejectReason.UNKNOWN_SYMBOL)
            assert "'DOGE-USDT' is not traded here" in message

            no_id = stub.GetOrder(pb.MatcherGetOrderRequest(symbol="BTC-USDT"))
            code, reason, _ = await refused(no_id)
            assert (code, reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                RejectReason.INVALID_ORDER_ID,
            )

            empty = await stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol="ETH-USDT"))
            assert (empty.sequence, list(empty.bids), list(empty.asks)) == (0, [], [])


async def test_commands_logged_before_the_matcher_started_are_matched(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    # A consumer that started at "latest" would wait forever for these.
    await bus.create_topics([TopicSpec(orders_topic(prefix), PARTITIONS)])
    produced = await produce(bus, orders_topic(prefix), stream(seed=1, per_symbol=40))
    config = settings(prefix, markets_file)
    async with running(bus, config):
        await wait_processed(bus, config.group_id, orders_topic(prefix), produced)
        published = await read_engine(bus, engine_topic(prefix))
    assert check_exact(published, straight_run(produced)) > len(produced)


async def test_health_is_not_serving_until_the_partitions_are_recovered(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    service = build(settings(prefix, markets_file), bus, markets=MARKETS)
    await service.start()
    # Listening, but not in the group yet, let alone recovered.
    assert await health_status(service.port) == NOT_SERVING
    task = asyncio.create_task(service.run())
    await eventually(lambda: health_status(service.port), lambda s: s == SERVING,
                     what="SERVING once recovered")  # fmt: skip
    await service.stop()
    assert await asyncio.wait_for(task, DEADLINE_SECONDS) == 0
    assert not service.serving


async def test_two_instances_split_the_symbols_and_hand_over_without_gap_or_duplicate(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file)
    commands = stream(seed=2, per_symbol=90)
    thirds = [commands[:150], commands[150:300], commands[300:]]
    topic = orders_topic(prefix)
    async with running(bus, config) as (first, _):
        produced = await produce(bus, topic, thirds[0])
        async with running(bus, config) as (second, _):
            await eventually(
                lambda: owners(first.port, second.port),
                split_between_two,
                what="every symbol served by exactly one of the two, and both serving some",
            )
            produced += await produce(bus, topic, thirds[1])
            await wait_processed(bus, config.group_id, topic, produced)
        # The second left the group: the first owns everything again.
        await eventually(
            lambda: owners(first.port),
            lambda found: all(o == [0] for o in found.values()),
            what="the remaining instance serves every symbol",
        )
        produced += await produce(bus, topic, thirds[2])
        await wait_processed(bus, config.group_id, topic, produced)
        published = await read_engine(bus, engine_topic(prefix))
    check_exact(published, straight_run(produced))


async def test_a_restart_restores_books_from_snapshots_and_stays_exact(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file, snapshot_every=25)
    topic = orders_topic(prefix)
    first = stream(seed=3, per_symbol=120)
    async with running(bus, config) as (before, _):
        produced = await produce(bus, topic, first)
        await wait_processed(bus, config.group_id, topic, produced)
        saved = [_sample(before, "snapshots_saved_total", symbol=s) for s in SYMBOLS]
    assert all(count >= 4 for count in saved), saved
    produced += await produce(bus, topic, stream(seed=4, per_symbol=30))  # while it is down
    async with running(bus, config) as (after, _):
        restored = [_sample(after, "snapshots_restored_total", symbol=s) for s in SYMBOLS]
        assert restored == [1.0] * len(SYMBOLS)
        replayed = sum(
            _sample(after, "commands_applied_total", symbol=s, phase="replay") for s in SYMBOLS
        )
        assert 0 < replayed < len(first) / 2, replayed
        await wait_processed(bus, config.group_id, topic, produced)
        published = await read_engine(bus, engine_topic(prefix))
    check_exact(published, straight_run(produced))


def _sample(service: MatcherService, name: str, **labels: str) -> float:
    return service.metrics.value(f"ordermesh_matcher_{name}", labels)


async def test_a_record_that_does_not_decode_stops_the_matcher_every_time(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file)
    topic = orders_topic(prefix)
    async with running(bus, config) as (_, task):
        produced = await produce(bus, topic, stream(seed=5, per_symbol=4, symbols=["BTC-USDT"]))
        await wait_processed(bus, config.group_id, topic, produced)
        producer = bus.producer()
        await producer.start()
        garbage = await producer.send(topic, b"\xff\xfe not a command", key=b"BTC-USDT")
        await producer.stop()
        assert await asyncio.wait_for(asyncio.shield(task), DEADLINE_SECONDS) == EXIT_FATAL
    # Not skipped: nothing at or after it was committed, and the next matcher stops on it too.
    committed = await committed_offsets(bus, config.group_id, topic)
    assert committed[garbage.partition] == garbage.offset
    async with running(bus, config, wait=False) as (_, again):
        assert await asyncio.wait_for(asyncio.shield(again), DEADLINE_SECONDS) == EXIT_FATAL
    assert (await committed_offsets(bus, config.group_id, topic))[garbage.partition] == (
        garbage.offset
    )


async def test_a_command_for_a_symbol_outside_the_markets_stops_the_matcher(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file)
    stray = limit(1, Side.BUY, usdt(100), btc("0.1"), symbol=Symbol("DOGE-USDT"))
    async with running(bus, config) as (service, task):
        await produce(bus, orders_topic(prefix), [stray])
        assert await asyncio.wait_for(asyncio.shield(task), DEADLINE_SECONDS) == EXIT_FATAL
        assert await health_status(service.port) == NOT_SERVING


class ReachableBus:
    """A MemoryBus whose admin side can be cut off: what a probe sees when Kafka is down."""

    def __init__(self) -> None:
        self.inner = MemoryBus()
        self.reachable = True

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        return self.inner.producer(transactional_id=transactional_id)

    def consumer(self, **options: Any) -> Consumer:
        return self.inner.consumer(**options)

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        await self.inner.create_topics(specs)

    async def partitions(self, topic: str) -> int:
        if not self.reachable:
            raise BusError("no broker answers (the test cut the bus off)")
        return await self.inner.partitions(topic)

    async def close(self) -> None:
        await self.inner.close()


class GatedStore:
    """Snapshot store whose load of one key waits until the test opens the gate."""

    def __init__(self, inner: BusSnapshotStore, key: str) -> None:
        self.inner = inner
        self.key = key
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def load(self, key: str) -> bytes | None:
        if key == self.key:
            self.reached.set()
            await self.gate.wait()
        return await self.inner.load(key)

    async def save(self, key: str, data: bytes, *, producer: Producer | None = None) -> None:
        await self.inner.save(key, data, producer=producer)


async def test_health_follows_recovery_and_whether_the_bus_answers(
    prefix: str, markets_file: Any
) -> None:
    bus = ReachableBus()
    config = settings(prefix, markets_file)
    topic = orders_topic(prefix)
    async with running(bus, config):
        produced = await produce(bus, topic, stream(seed=6, per_symbol=20))
        await wait_processed(bus, config.group_id, topic, produced)

    # Partition 3 (XRP-USDT) is taken over last; hold its snapshot load there.
    store = GatedStore(BusSnapshotStore(bus, prefix + SNAPSHOTS), "matcher/XRP-USDT")
    service = build(config, bus, markets=MARKETS, store=store)
    await service.start()
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(store.reached.wait(), DEADLINE_SECONDS)
    assert await health_status(service.port) == NOT_SERVING
    async with matcher_stub(service.port) as stub:
        # Partition 0 is taken over but not replayed yet: its symbol is recovering.
        call = stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol="ADA-USDT"))
        code, reason, message = await refused(call)
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.UNAVAILABLE)
        assert "ADA-USDT is recovering on this matcher instance" in message
        store.gate.set()
        await serving(service, task)
        book = await stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol="ADA-USDT"))
        assert book.sequence == len(straight_run(produced)["ADA-USDT"])

    bus.reachable = False
    await eventually(lambda: health_status(service.port), lambda s: s == NOT_SERVING,
                     what="NOT_SERVING while the bus does not answer")  # fmt: skip
    bus.reachable = True
    await eventually(lambda: health_status(service.port), lambda s: s == SERVING,
                     what="SERVING again once it answers")  # fmt: skip
    await service.stop()
    assert await asyncio.wait_for(task, DEADLINE_SECONDS) == 0


async def test_a_matcher_whose_producer_is_fenced_stops_as_a_zombie(
    bus: Bus, prefix: str, markets_file: Any
) -> None:
    config = settings(prefix, markets_file)
    btc_partition = partition_for(b"BTC-USDT", PARTITIONS)
    async with running(bus, config) as (service, task):
        # What a new owner of BTC-USDT's partition does first: start its transactional producer.
        usurper = bus.producer(transactional_id=service.config.transactional_id(btc_partition))
        await usurper.start()
        try:
            await produce(bus, orders_topic(prefix), [limit(1, Side.BUY, usdt(99), btc("0.1"))])
            assert await asyncio.wait_for(asyncio.shield(task), DEADLINE_SECONDS) == EXIT_FENCED
        finally:
            await usurper.stop()
    assert btc_partition not in await committed_offsets(bus, config.group_id, orders_topic(prefix))
