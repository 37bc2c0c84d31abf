"""Helpers for the ubscore service tests: a running service, requests, reading topics back.

Waits are conditions with deadlines (`eventually`, `read_all`), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh import amounts
from ordermesh.bus.base import Bus, Producer, Record, TopicPartition
from ordermesh.codec import decode_command, decode_ledger_event, encode_engine_event
from ordermesh.events import (
    EngineEvent,
    EventBody,
    LedgerEvent,
    NewOrder,
    OrderCommand,
    OrderDone,
    TradeExecuted,
)
from ordermesh.markets import MarketTable, load_markets
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderStatus,
    RejectReason,
    Side,
    Symbol,
    TradeId,
)
from ordermesh.snapshots import SnapshotStore
from ordermesh.v1 import common_pb2, ubscore_pb2, ubscore_pb2_grpc
from tests import waiting
from ubscore.bootstrap import UBSCoreService, UBSCoreSettings, build
from ubscore.lifecycle import LogTopics

DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.02

MARKETS: MarketTable = load_markets()
BTC_USDT = Symbol("BTC-USDT")
USDT_UNIT = 10**6
BTC_UNIT = 10**8
PRICE = 100 * USDT_UNIT  # 100 USDT per BTC
QUANTITY = BTC_UNIT // 100  # 0.01 BTC
NOTIONAL = 1 * USDT_UNIT  # PRICE x QUANTITY

if TYPE_CHECKING:
    Stub = ubscore_pb2_grpc.UBSCoreAsyncStub


eventually = functools.partial(
    waiting.eventually, seconds=DEADLINE_SECONDS, poll_seconds=POLL_SECONDS
)
"""Wait for a condition with this file's deadline and poll interval."""


def settings(prefix: str, **overrides: Any) -> UBSCoreSettings:
    """Service settings for a test: loopback, any free port, no metrics server, short grace."""
    values: dict[str, Any] = {
        "port": 0,
        "metrics_port": 0,
        "grace_seconds": 2.0,
        "topic_prefix": prefix,
        "partitions": 2,
    }
    values.update(overrides)
    return UBSCoreSettings(**values)


@dataclass
class Running:
    """A service running in this process, with a client channel to it."""

    service: UBSCoreService
    run: asyncio.Task[int]
    channel: grpc.aio.Channel
    stub: Stub

    @property
    def topics(self) -> LogTopics:
        return self.service.topics

    async def health(self) -> int:
        return await health_status(self.channel)

    async def exit_status(self, seconds: float = DEADLINE_SECONDS) -> int:
        async with asyncio.timeout(seconds):
            return await asyncio.shield(self.run)


@contextlib.asynccontextmanager
async def running(
    bus: Bus,
    prefix: str,
    *,
    wait: bool = True,
    clock: Callable[[], int] = time.time_ns,
    store: SnapshotStore | None = None,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """Build, start and run a service on `bus`; stop it (gracefully) on the way out."""
    service = build(settings(prefix, **overrides), bus, clock=clock, store=store)
    await service.start()
    run = asyncio.create_task(service.run())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        if wait:
            await until_serving(service, run)
        yield Running(service, run, channel, ubscore_pb2_grpc.UBSCoreStub(channel))
    finally:
        await channel.close()
        await service.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DEADLINE_SECONDS):
                await run


async def until_serving(service: UBSCoreService, run: asyncio.Task[int]) -> None:
    """Wait for the service to go live; fail the test if it stopped instead."""
    live = asyncio.create_task(service.wait_serving())
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await asyncio.wait({live, run}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        live.cancel()
    if live.done() and not live.cancelled() and live.exception() is not None:
        pytest.fail(f"the service failed while recovering: {live.exception()!r}")
    if run.done():
        pytest.fail(f"the service stopped while recovering, status {run.result()}")
    assert service.lifecycle.serving


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = response.status
    return status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# -- requests --------------------------------------------------------------------------------


def limit_order(
    account: int,
    side: common_pb2.Side.ValueType,
    client_order_id: str,
    *,
    price: int = PRICE,
    quantity: int = QUANTITY,
    symbol: str = BTC_USDT,
) -> ubscore_pb2.UBSCoreReserveRequest:
    return ubscore_pb2.UBSCoreReserveRequest(
        account_id=account,
        symbol=symbol,
        side=side,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        price=price,
        quantity=quantity,
        client_order_id=client_order_id,
        self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_NONE,
    )


BUY = common_pb2.SIDE_BUY
SELL = common_pb2.SIDE_SELL


async def deposit(stub: Stub, account: int, asset: str, amount: int, reference: str) -> Any:
    return await stub.Deposit(
        ubscore_pb2.UBSCoreDepositRequest(
            account_id=account, asset=asset, amount=amount, reference_id=reference
        ),
        timeout=DEADLINE_SECONDS,
    )


async def balances(stub: Stub, account: int) -> dict[str, tuple[int, int]]:
    """{asset: (available, frozen)} as GetBalances reports it."""
    response = await stub.GetBalances(
        ubscore_pb2.UBSCoreGetBalancesRequest(account_id=account), timeout=DEADLINE_SECONDS
    )
    return {entry.asset: (entry.available, entry.frozen) for entry in response.balances}


# -- the log ---------------------------------------------------------------------------------


async def read_all(bus: Bus, topic: str) -> list[Record]:
    """Every committed record of `topic`, all partitions, up to the end offsets now."""
    partitions = [TopicPartition(topic, i) for i in range(await bus.partitions(topic))]
    consumer = bus.consumer(read_committed=True)
    consumer.assign(partitions)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            consumer.seek(partition, 0)
        records: list[Record] = []
        async with asyncio.timeout(DEADLINE_SECONDS):
            for partition in partitions:
                while await consumer.position(partition) < ends[partition]:
                    records += await consumer.getmany(timeout_ms=200)
        return records
    finally:
        await consumer.stop()


async def commands(bus: Bus, topics: LogTopics) -> list[OrderCommand]:
    return [decode_command(record.value) for record in await read_all(bus, topics.orders)]


async def ledger(bus: Bus, topics: LogTopics) -> list[LedgerEvent]:
    return [decode_ledger_event(record.value) for record in await read_all(bus, topics.ledger)]


def new_orders(logged: Sequence[OrderCommand]) -> Counter[tuple[int, str]]:
    """How many NewOrders the log holds per (account, client_order_id)."""
    return Counter(
        (command.account_id, command.client_order_id)
        for command in logged
        if isinstance(command, NewOrder)
    )


class Matcher:
    """Writes hand-made engine events the way the matcher does: numbered per symbol, each
    batch in one transaction."""

    def __init__(self, producer: Producer, topic: str, symbol: Symbol = BTC_USDT) -> None:
        self.producer = producer
        self.topic = topic
        self.symbol = symbol
        self.sequence = 0
        self.trades = 0

    async def emit(self, *bodies: EventBody) -> None:
        await self.producer.begin_transaction()
        for body in bodies:
            self.sequence += 1
            event = EngineEvent(self.symbol, self.sequence, 0, 0, b"", body)
            await self.producer.send(
                self.topic, encode_engine_event(event), key=self.symbol.encode()
            )
        await self.producer.commit_transaction()

    def trade(self, maker: NewOrder, taker: NewOrder, quantity: int = QUANTITY) -> TradeExecuted:
        """A fill at the maker's price, with the market's fees on what each side receives."""
        market = MARKETS.market(self.symbol)
        price = maker.price
        quote = market.notional(price, quantity)
        maker_fee = amounts.fee(quantity if maker.side is Side.BUY else quote, market.maker_fee_bps)
        taker_fee = amounts.fee(quantity if taker.side is Side.BUY else quote, market.taker_fee_bps)
        self.trades += 1
        return TradeExecuted(
            TradeId(self.trades),
            maker.order_id,
            taker.order_id,
            maker.account_id,
            taker.account_id,
            taker.side,
            price,
            quantity,
            quote,
            maker_fee,
            taker_fee,
        )


@contextlib.asynccontextmanager
async def matcher(bus: Bus, topics: LogTopics) -> AsyncIterator[Matcher]:
    """A `Matcher` writing to the engine topic with its own transactional producer."""
    producer = bus.producer(transactional_id=f"{topics.engine}-matcher")
    await producer.start()
    try:
        yield Matcher(producer, topics.engine)
    finally:
        await producer.stop()


def done(order: NewOrder, status: OrderStatus, filled: int, filled_quote: int) -> OrderDone:
    return OrderDone(
        OrderId(order.order_id),
        AccountId(order.account_id),
        ClientOrderId(order.client_order_id),
        status,
        RejectReason.UNSPECIFIED,
        filled,
        order.quantity - filled,
        filled_quote,
        order.side,
        order.price,
    )


class NoSnapshots:
    """A snapshot store that has none and keeps none: every start replays the whole log."""

    def __init__(self) -> None:
        self.saved = 0

    async def load(self, key: str) -> bytes | None:
        return None

    async def save(self, key: str, data: bytes, *, producer: Producer | None = None) -> None:
        self.saved += 1


def supply(events: Sequence[LedgerEvent]) -> Counter[str]:
    """Deposits minus withdrawals per asset, from the ledger topic."""
    total: Counter[str] = Counter()
    for event in events:
        sign = 1 if event.kind is LedgerEntryKind.DEPOSIT else -1
        total[event.asset] += sign * event.amount
    return total
