"""The live streams against the whole mesh: order updates, market data, OrderEntry, ends.

Flows are seeded and random (limit GTC/IOC, market, cancels, several accounts); what a
stream says is checked against the engine topic itself or against GetOrderBook.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import grpc
import pytest

from gateway.bootstrap import GatewayService
from ordermesh.codec import encode_engine_event
from ordermesh.events import EngineEvent, OrderAccepted, OrderDone, TradeExecuted
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    RejectReason,
    Side,
    Symbol,
)
from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc
from tests.integration.gateway.harness import (
    Mesh,
    as_trader,
    balances,
    deposit,
    eventually,
    limit,
    mesh,
    place,
    refusal_of,
)
from tests.integration.mesh.harness import engine_events
from tests.unit.gateway.test_stream_book import LocalBook, levels_of
from ubscore.lifecycle import LogTopics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

BUY, SELL = S.SIDE_BUY, S.SIDE_SELL
T = TypeVar("T")
Update = tuple[int, int, object, int]
"""(sequence, order_id, status or "fill", trade_id or 0)."""


def gateway_of(mesh: Mesh) -> GatewayService:
    return mesh.gateway_service


async def subscribed(mesh: Mesh, count: int) -> None:
    """Wait until the gateway holds `count` stream subscriptions."""
    hub = gateway_of(mesh).hub
    await eventually(
        lambda: _now(hub.subscriptions()), lambda n: n == count, what="stream subscriptions"
    )


async def _now(value: T) -> T:
    return value


@dataclass
class Collected:
    """A stream read by a background task: the messages so far, and how it ended."""

    messages: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None

    def code(self) -> grpc.StatusCode | None:
        error = self.error
        return error.code() if isinstance(error, grpc.aio.AioRpcError) else None


@contextlib.asynccontextmanager
async def collecting(
    call: AsyncIterable[Any], apply: Callable[[Any], None] | None = None
) -> AsyncIterator[Collected]:
    collected = Collected()

    async def read() -> None:
        try:
            async for message in call:
                if apply is not None:
                    apply(message)
                collected.messages.append(message)
        except (grpc.aio.AioRpcError, AssertionError) as e:
            collected.error = e

    collected.task = asyncio.create_task(read())
    try:
        yield collected
    finally:
        collected.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collected.task
        cancel = getattr(call, "cancel", None)
        if cancel is not None:
            cancel()


async def fund(mesh: Mesh, accounts: list[int]) -> None:
    for account in accounts:
        await deposit(mesh, account, "USDT", "10000000")
        await deposit(mesh, account, "BTC", "100")
        await deposit(mesh, account, "ETH", "100")


async def random_flow(
    mesh: Mesh, rng: random.Random, accounts: list[int], count: int, symbols: list[str]
) -> None:
    """`count` random orders and cancels with RESULT, one at a time."""
    resting: list[tuple[int, str, int]] = []
    for n in range(count):
        account = rng.choice(accounts)
        symbol = rng.choices(symbols, weights=[4, 1][: len(symbols)])[0]
        if resting and rng.random() < 0.2:
            owner, where, order_id = resting.pop(rng.randrange(len(resting)))
            with contextlib.suppress(grpc.aio.AioRpcError):  # it may have filled meanwhile
                await mesh.stub.CancelOrder(
                    gateway_pb2.CancelOrderRequest(
                        symbol=where, order_id=order_id, response_type=S.RESPONSE_TYPE_RESULT
                    ),
                    metadata=as_trader(owner),
                    timeout=20,
                )
            continue
        side = rng.choice([BUY, SELL])
        quantity = str(Decimal(rng.randint(1, 30)) / 1000)
        if rng.random() < 0.1:
            request = gateway_pb2.PlaceOrderRequest(
                symbol=symbol, side=side, order_type=S.ORDER_TYPE_MARKET, quantity=quantity,
                client_order_id=f"m-{n}", response_type=S.RESPONSE_TYPE_RESULT,
            )  # fmt: skip
        else:
            price = str(3000 + 5 * rng.randint(-8, 8))
            tif = S.TIME_IN_FORCE_IOC if rng.random() < 0.15 else S.TIME_IN_FORCE_GTC
            request = limit(side, price, quantity, f"o-{n}", symbol=symbol, time_in_force=tif)
        placed = await place(mesh, account, request)
        if placed.status in {S.ORDER_STATUS_NEW, S.ORDER_STATUS_PARTIALLY_FILLED}:
            resting.append((account, symbol, placed.order_id))


async def expected_updates(mesh: Mesh, account: int, symbols: list[str]) -> list[Update]:
    """The engine events of `account`'s orders, per the log, in log order."""
    events = await engine_events(mesh.bus, LogTopics.with_prefix(mesh.prefix))
    wanted: list[Update] = []
    for symbol in symbols:
        for event in events.get(symbol, []):
            body = event.body
            if isinstance(body, OrderAccepted) and body.account_id == account:
                wanted.append((event.sequence, body.order_id, S.ORDER_STATUS_NEW, 0))
            elif isinstance(body, TradeExecuted):
                if body.maker_account_id == account:
                    wanted.append((event.sequence, body.maker_order_id, "fill", body.trade_id))
                if body.taker_account_id == account:
                    wanted.append((event.sequence, body.taker_order_id, "fill", body.trade_id))
            elif isinstance(body, OrderDone) and body.account_id == account:
                wanted.append((event.sequence, body.order_id, int(body.status), 0))
    return wanted


def told(
    messages: list[gateway_pb2.StreamOrderUpdatesResponse], symbols: list[str]
) -> list[Update]:
    got: list[Update] = []
    for symbol in symbols:
        for m in messages:
            if m.order.symbol != symbol:
                continue
            if m.HasField("fill"):
                got.append((m.sequence, m.order.order_id, "fill", m.fill.trade_id))
            else:
                got.append((m.sequence, m.order.order_id, m.order.status, 0))
    return got


async def test_order_updates_are_exactly_my_orders_events_in_order(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    me, filtered, other = accounts = mesh.accounts(3)
    await fund(mesh, accounts)
    symbols = ["BTC-USDT", "ETH-USDT"]
    mine = mesh.stub.StreamOrderUpdates(
        gateway_pb2.StreamOrderUpdatesRequest(), metadata=as_trader(me)
    )
    btc_only = mesh.stub.StreamOrderUpdates(
        gateway_pb2.StreamOrderUpdatesRequest(symbol="BTC-USDT"), metadata=as_trader(filtered)
    )
    async with collecting(mine) as got, collecting(btc_only) as got_filtered:
        await subscribed(mesh, 2)
        await random_flow(mesh, random.Random(7), accounts, 80, symbols)
        expected = await expected_updates(mesh, me, symbols)
        expected_filtered = await expected_updates(mesh, filtered, ["BTC-USDT"])
        await eventually(
            lambda: _now(len(got.messages) + len(got_filtered.messages)),
            lambda n: n >= len(expected) + len(expected_filtered),
            what="order updates",
        )
    assert got.error is None
    assert got_filtered.error is None
    assert told(got.messages, symbols) == expected
    assert told(got_filtered.messages, symbols) == expected_filtered
    assert {m.order.symbol for m in got_filtered.messages} == {"BTC-USDT"}
    assert any(kind == "fill" for _, _, kind, _ in expected)
    others = await expected_updates(mesh, other, symbols)
    assert others
    assert not {order for _, order, _, _ in others} & {m.order.order_id for m in got.messages}


async def test_market_data_rebuilds_the_book_of_get_order_book(running_mesh: Mesh) -> None:
    mesh = running_mesh
    accounts = mesh.accounts(3)
    await fund(mesh, accounts)
    depth = 4
    books = {"early": LocalBook(), "late": LocalBook(), "deep": LocalBook()}
    rng = random.Random(11)

    def stream(depth: int) -> AsyncIterable[gateway_pb2.StreamMarketDataResponse]:
        return mesh.stub.StreamMarketData(
            gateway_pb2.StreamMarketDataRequest(symbol="BTC-USDT", depth=depth),
            metadata=as_trader(accounts[0]),
        )

    async with (
        collecting(stream(depth), books["early"].apply) as early,
        collecting(stream(1000), books["deep"].apply) as deep,
    ):
        await subscribed(mesh, 2)
        await random_flow(mesh, rng, accounts, 70, ["BTC-USDT"])
        async with collecting(stream(depth), books["late"].apply) as late:
            await random_flow(mesh, rng, accounts, 70, ["BTC-USDT"])
            for name, wanted in (("early", depth), ("late", depth), ("deep", 1000)):
                answer = await mesh.stub.GetOrderBook(
                    gateway_pb2.GetOrderBookRequest(symbol="BTC-USDT", depth=wanted),
                    metadata=as_trader(accounts[0]),
                )
                book = books[name]
                await eventually(
                    lambda book=book: _now(book.sequence),  # type: ignore[misc]
                    lambda seen, answer=answer: seen >= answer.sequence,  # type: ignore[misc]
                    what=f"{name} stream at sequence",
                )
                assert book.sequence == answer.sequence
                assert book.top(wanted) == levels_of(answer), name
            assert late.messages[0].WhichOneof("data") == "snapshot"
            assert late.messages[0].sequence > 0
        for collected in (early, deep, late):
            assert collected.error is None
    assert books["deep"].trades
    # Levels beyond the depth were told too (deltas go for every level): more than `depth`.
    assert max(len(books["early"].bids), len(books["early"].asks)) > depth


@dataclass
class Entry:
    """An OrderEntry stream driven by the test: requests in, answers collected."""

    requests: asyncio.Queue[gateway_pb2.OrderEntryRequest | None] = field(
        default_factory=asyncio.Queue
    )
    answers: list[gateway_pb2.OrderEntryResponse] = field(default_factory=list)

    async def source(self) -> AsyncIterator[gateway_pb2.OrderEntryRequest]:
        while (request := await self.requests.get()) is not None:
            yield request


def buy(n: int, price: str = "100", quantity: str = "0.01") -> gateway_pb2.OrderEntryRequest:
    return gateway_pb2.OrderEntryRequest(place=limit(BUY, price, quantity, f"e-{n}", result=False))


async def test_order_entry_answers_ten_thousand_orders_on_one_stream(
    pg_database: str, key_file: Any
) -> None:
    count = 10_000
    async with mesh(pg_database, key_file, rate_per_second=1e6, burst=1_000_000) as m:
        (account,) = m.accounts(1)
        await deposit(m, account, "USDT", "1000000")
        requests: list[gateway_pb2.OrderEntryRequest] = [buy(n) for n in range(count)]
        requests[17] = buy(17, price="100.001")  # refused, as the unary call would be
        requests[18] = gateway_pb2.OrderEntryRequest(
            cancel=gateway_pb2.CancelOrderRequest(symbol="BTC-USDT", client_order_id="e-0")
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = [
            answer
            async for answer in m.stub.OrderEntry(iter(requests), metadata=as_trader(account))
        ]
        seconds = loop.time() - started
        by_id: dict[str, list[gateway_pb2.OrderEntryResponse]] = {}
        for answer in answers:
            by_id.setdefault(answer.client_order_id, []).append(answer)
        assert len(answers) == count
        assert set(by_id) == {f"e-{n}" for n in range(count)} - {"e-18"} | {"e-0"}
        assert len(by_id["e-0"]) == 2  # the place and the cancel of it
        refused_one = by_id["e-17"][0]
        assert refused_one.WhichOneof("response") == "error"
        assert (refused_one.error.code, refused_one.error.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            "INVALID_PRICE",
        )
        placed = [a for a in answers if a.WhichOneof("response") == "placed"]
        assert len(placed) == count - 2
        assert len({a.placed.order_id for a in placed}) == count - 2
        cancel = next(a for a in by_id["e-0"] if a.WhichOneof("response") != "placed")
        live = count - 3  # e-17 refused, e-18 replaced by the cancel, e-0 canceled
        frozen = Decimal(live)  # 100 x 0.01 each
        if cancel.WhichOneof("response") == "error":  # the cancel overtook its order
            frozen += 1
        await eventually(
            lambda: balances(m, account),
            lambda b: b["USDT"] == (str(1_000_000 - frozen), str(frozen)),
            what="balances after the stream",
        )
        print(f"OrderEntry: {count} orders answered in {seconds:.1f} s")
        assert gateway_of(m).streams.entry.in_flight == 0


async def test_order_entry_holds_a_client_that_stops_reading(
    pg_database: str, key_file: Any
) -> None:
    window, sent = 50, 4000  # more than the HTTP/2 windows on the way hold
    async with mesh(pg_database, key_file, order_entry_window=window) as m:
        (account,) = m.accounts(1)
        await deposit(m, account, "USDT", "100000")
        entry = Entry()
        port = gateway_of(m).port
        # A fixed receive window for the answers (no BDP probing): the client's buffer fills.
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0)]
        )
        try:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            call = stub.OrderEntry(entry.source(), metadata=as_trader(account))
            for n in range(sent):
                entry.requests.put_nowait(buy(n))
            counts = gateway_of(m).streams.entry
            handed = gateway_of(m).metrics.stream_messages.labels("OrderEntry")
            last: list[tuple[int, float]] = []

            async def state() -> tuple[int, float]:
                last.append((counts.in_flight, handed._value.get()))
                return last[-1]

            # The client reads nothing: the gateway fills its window, then nothing moves.
            await eventually(
                state,
                lambda now: now[0] == window and last[-2:] == [now, now],
                what="a full window that holds",
                seconds=30,
            )
            assert counts.peak == window
            # It stopped reading: the rest wait in the client or in the connection's HTTP/2
            # flow-control windows, not in the gateway.
            read = int(last[-1][1]) + window
            assert read < sent, "the gateway went on reading a client that reads nothing"
            unsent = entry.requests.qsize()
            # The client reads again: everything is answered, the window never overflowed.
            entry.requests.put_nowait(None)
            answers = [answer async for answer in call]
        finally:
            await channel.close()
        assert len(answers) == sent
        assert {a.client_order_id for a in answers} == {f"e-{n}" for n in range(sent)}
        assert all(a.WhichOneof("response") == "placed" for a in answers)
        assert counts.peak == window
        assert counts.in_flight == 0
        print(f"OrderEntry held at {window} in flight: read {read} of {sent}, {unsent} unsent")


async def test_a_stream_without_a_key_or_on_a_bad_symbol_is_refused(running_mesh: Mesh) -> None:
    mesh = running_mesh
    cases: list[tuple[Callable[[], Any], grpc.StatusCode]] = [
        (
            lambda: mesh.stub.StreamOrderUpdates(gateway_pb2.StreamOrderUpdatesRequest()),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            lambda: mesh.stub.StreamMarketData(
                gateway_pb2.StreamMarketDataRequest(symbol="NOPE-USDT"), metadata=as_trader(1)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: mesh.stub.StreamMarketData(
                gateway_pb2.StreamMarketDataRequest(symbol="BTC-USDT", depth=1001),
                metadata=as_trader(1),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for open_stream, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in open_stream():
                pass
        assert raised.value.code() == code


async def _ended(collected: Collected, code: grpc.StatusCode) -> None:
    """Wait for the stream to end; it must end with `code`."""
    task = collected.task
    assert task is not None
    await eventually(lambda: _now(task.done()), bool, what="the stream ended")
    assert collected.code() == code


@contextlib.asynccontextmanager
async def both_streams(mesh: Mesh, account: int) -> AsyncIterator[tuple[Collected, Collected]]:
    """`account`'s order updates and BTC-USDT market data, subscribed, the snapshot read."""
    updates = mesh.stub.StreamOrderUpdates(
        gateway_pb2.StreamOrderUpdatesRequest(), metadata=as_trader(account)
    )
    market = mesh.stub.StreamMarketData(
        gateway_pb2.StreamMarketDataRequest(symbol="BTC-USDT"), metadata=as_trader(account)
    )
    async with collecting(updates) as got_updates, collecting(market) as got_market:
        await subscribed(mesh, 2)
        await eventually(
            lambda: _now(len(got_market.messages)), lambda n: n == 1, what="the snapshot"
        )
        yield got_updates, got_market


async def test_losing_the_engine_tail_ends_every_stream_unavailable(running_mesh: Mesh) -> None:
    mesh = running_mesh
    (account,) = mesh.accounts(1)
    async with both_streams(mesh, account) as (got_updates, got_market):
        # The bus consumer under the running tail goes away: its next read fails.
        consumer = gateway_of(mesh).tail._consumer
        assert consumer is not None
        await consumer.stop()
        for collected in (got_updates, got_market):
            await _ended(collected, grpc.StatusCode.UNAVAILABLE)
            ended = refusal_of(collected.error)  # type: ignore[arg-type]
            assert ended.reason == "UNAVAILABLE"
            assert "engine tail stopped" in ended.message
    # and the gateway fail-stops (exit status 1), as it does on any loss of its tail
    assert await asyncio.wait_for(asyncio.shield(mesh.gateway.task), 20) == 1
    metrics = gateway_of(mesh).metrics
    for method in ("StreamMarketData", "StreamOrderUpdates"):
        assert metrics.streams_ended.labels(method, "tail_stopped")._value.get() == 1
        assert metrics.streams_open.labels(method)._value.get() == 0
    assert metrics.stream_messages.labels("StreamMarketData")._value.get() == 1  # the snapshot


async def test_a_gap_in_the_engine_log_ends_every_stream_aborted(running_mesh: Mesh) -> None:
    mesh = running_mesh
    seller, buyer = mesh.accounts(2)
    await deposit(mesh, seller, "BTC", "1")
    for n in range(2):  # two commands: the tail then checks the chain of BTC-USDT
        await place(mesh, seller, limit(SELL, str(3000 + n), "0.1", f"s-{n}"))
    async with both_streams(mesh, buyer) as (got_updates, got_market):
        snapshot = got_market.messages[0].snapshot
        # An event that skips sequences, written where the matcher writes BTC-USDT's.
        forged = EngineEvent(
            Symbol("BTC-USDT"), snapshot.sequence + 5, 10**9, 1, b"\x00" * 32,
            OrderDone(OrderId(999_999), AccountId(buyer), ClientOrderId("x"),
                      OrderStatus.CANCELED, RejectReason.UNSPECIFIED, 0, 0, 0, Side.BUY, 1),
        )  # fmt: skip
        producer = mesh.bus.producer()
        await producer.start()
        try:
            await producer.send(
                mesh.prefix + "ordermesh.engine", encode_engine_event(forged), key=b"BTC-USDT"
            )
        finally:
            await producer.stop()
        for collected in (got_updates, got_market):
            await _ended(collected, grpc.StatusCode.ABORTED)
            assert "resync" in refusal_of(collected.error).message  # type: ignore[arg-type]
    assert await asyncio.wait_for(asyncio.shield(mesh.gateway.task), 20) == 1
