"""A trading session through the real matcher core, settled and read back over gRPC.

Runs on the in-memory bus and on real Kafka. Amounts in the comments are decimal; the
assertions are in atoms (BTC 8 decimals, USDT 6; maker fee 10 bps, taker fee 20 bps).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.bus.base import Bus
from ordermesh.model import OrderStatus, OrderType, RejectReason, TimeInForce
from ordermesh.v1 import common_pb2, settlement_pb2
from settlement.core import EXTERNAL_ACCOUNT, MINUTE_NS, Candle, CandleInterval, aggregate
from settlement.queries import ledger_problems
from settlement.service import SERVICE_NAME
from tests.integration.settlement.harness import create_topics, fetch, publish, running
from tests.unit.settlement.exchange import BUY, SELL, T0, Exchange, atoms

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

DAY = 24 * 60 * MINUTE_NS


def usdt(value: str) -> int:
    return atoms(value, "USDT")


def btc(value: str) -> int:
    return atoms(value, "BTC")


def session() -> tuple[Exchange, dict[str, int]]:
    """Deposits, resting and crossing orders, a cancel, IOC/FOK/post-only, a market buy."""
    ex = Exchange()
    ex.fund(1, "BTC", btc("2"), "dep-1")
    ex.fund(2, "USDT", usdt("100000"), "dep-2")
    ex.fund(3, "USDT", usdt("50000"), "dep-3")
    ex.fund(2, "USDT", usdt("1000"), "wd-2", withdraw=True)
    at = lambda minutes, seconds=0: T0 + minutes * MINUTE_NS + seconds * 10**9  # noqa: E731
    ids: dict[str, int] = {}
    ids["M1"], _ = ex.order(1, SELL, usdt("30000"), btc("0.5"), at=at(0, 1))
    ids["T1"], _ = ex.order(2, BUY, usdt("30010"), btc("0.2"), at=at(0, 2))
    ids["T2"], _ = ex.order(2, BUY, usdt("30000"), btc("0.1"), at=at(1))
    ids["M2"], _ = ex.order(1, SELL, usdt("30100"), btc("0.4"), at=at(2))
    ex.cancel(1, ids["M1"], at=at(2, 1))
    ids["I1"], _ = ex.order(3, BUY, usdt("30100"), btc("0.5"), tif=TimeInForce.IOC, at=at(5))
    ids["F1"], _ = ex.order(3, BUY, usdt("30100"), btc("1"), tif=TimeInForce.FOK, at=at(5, 1))
    ids["M3"], _ = ex.order(1, SELL, usdt("30200"), btc("0.3"), at=at(6))
    ids["P1"], _ = ex.order(2, BUY, usdt("30200"), btc("0.1"), post_only=True, at=at(6, 1))
    ex.order(1, SELL, usdt("1"), btc("1"), order_id=ids["M3"], client="dup", at=at(6, 2))
    ids["MK"], _ = ex.order(3, BUY, 0, 0, order_type=OrderType.MARKET, tif=TimeInForce.IOC,
                            budget=usdt("3020"), at=at(65))  # fmt: skip
    ids["D1"], _ = ex.order(1, SELL, usdt("29000"), btc("0.1"), at=T0 + DAY)
    ids["D2"], _ = ex.order(2, BUY, usdt("29000"), btc("0.1"), tif=TimeInForce.IOC,
                            at=T0 + DAY + 30 * 10**9)  # fmt: skip
    return ex, ids


async def all_pages(call: Callable[[str], Awaitable[Any]], field: str) -> list[list[Any]]:
    pages, token = [], ""
    while True:
        response = await call(token)
        pages.append(list(getattr(response, field)))
        token = response.next_page_token
        if not token:
            return pages


async def test_a_session_is_settled_exactly_and_read_back(
    bus: Bus, pg_database: str, prefix: str
) -> None:
    ex, ids = session()
    async with running(bus, pg_database, prefix, now_ns=T0 + DAY + 60 * MINUTE_NS) as run:
        await create_topics(bus, run.topics)
        await publish(bus, run.topics, ex.records)
        await run.settled(ex.records)
        stub = run.stub
        health: Any = health_pb2_grpc.HealthStub(run.channel)  # the stubs omit its methods
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert run.service.metrics.rows.labels(table="trades")._value.get() == 5

        # Trades: five, each once, newest first, two per page.
        pages = await all_pages(
            lambda t: stub.ListTrades(settlement_pb2.SettlementListTradesRequest(
                symbol="BTC-USDT", page_size=2, page_token=t)),
            "trades",
        )  # fmt: skip
        assert [len(p) for p in pages] == [2, 2, 1]
        trades = [t for page in pages for t in page]
        assert [(t.price, t.quantity) for t in reversed(trades)] == [
            (usdt("30000"), btc("0.2")), (usdt("30000"), btc("0.1")),
            (usdt("30100"), btc("0.4")), (usdt("30200"), btc("0.1")),
            (usdt("29000"), btc("0.1")),
        ]  # fmt: skip
        assert [t.trade_id for t in trades] == sorted((t.trade_id for t in trades), reverse=True)
        mine = await all_pages(
            lambda t: stub.ListTrades(settlement_pb2.SettlementListTradesRequest(
                account_id=2, page_size=2, page_token=t)),
            "trades",
        )  # fmt: skip
        assert [len(p) for p in mine] == [2, 1]
        assert {t.taker_order_id for p in mine for t in p} == {ids["T1"], ids["T2"], ids["D2"]}
        seller = await stub.ListTrades(settlement_pb2.SettlementListTradesRequest(account_id=1))
        assert len(seller.trades) == 5
        assert await fetch(pg_database, "SELECT symbol, trade_id FROM trades GROUP BY 1, 2 "
                           "HAVING count(*) > 1") == []  # fmt: skip

        await check_orders(stub, ids)
        await check_ledger(stub, pg_database)
        await check_candles(stub, pg_database)
        await check_ticker(stub, run.clock)


async def check_orders(stub: Any, ids: dict[str, int]) -> None:
    async def order(name: str) -> Any:
        account = {"M1": 1, "M2": 1, "M3": 1, "D1": 1, "T1": 2, "T2": 2, "P1": 2, "D2": 2}.get(
            name, 3
        )
        response = await stub.GetOrder(
            settlement_pb2.SettlementGetOrderRequest(account_id=account, order_id=ids[name])
        )
        return response.order

    expected = {
        "M1": (OrderStatus.CANCELED, RejectReason.UNSPECIFIED, btc("0.3")),
        "T1": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.2")),
        "T2": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.1")),
        "M2": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.4")),
        "I1": (OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY, btc("0.4")),
        "F1": (OrderStatus.REJECTED, RejectReason.FOK_NOT_FILLABLE, 0),
        "M3": (OrderStatus.PARTIALLY_FILLED, RejectReason.UNSPECIFIED, btc("0.1")),
        "P1": (OrderStatus.REJECTED, RejectReason.POST_ONLY_WOULD_TAKE, 0),
        "MK": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.1")),
        "D1": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.1")),
        "D2": (OrderStatus.FILLED, RejectReason.UNSPECIFIED, btc("0.1")),
    }
    for name, (status, reason, filled) in expected.items():
        got = await order(name)
        assert (got.status, got.reason, got.filled_quantity) == (status, reason, filled), name
    m3 = await order("M3")  # untouched by the duplicate command that reused its id
    assert (m3.client_order_id, m3.price, m3.quantity) == (
        f"c{ids['M3']}",
        usdt("30200"),
        btc("0.3"),
    )
    assert m3.side == common_pb2.SIDE_SELL
    mk = await order("MK")
    assert (mk.order_type, mk.quote_budget, mk.filled_quote_quantity) == (
        common_pb2.ORDER_TYPE_MARKET, usdt("3020"), usdt("3020"),
    )  # fmt: skip
    by_client = await stub.GetOrder(
        settlement_pb2.SettlementGetOrderRequest(account_id=1, client_order_id=f"c{ids['M3']}")
    )
    assert by_client.order.order_id == ids["M3"]

    listing = await stub.ListOrders(settlement_pb2.SettlementListOrdersRequest(account_id=1))
    assert [o.order_id for o in listing.orders] == sorted(
        (ids[n] for n in ("M1", "M2", "M3", "D1")), reverse=True
    )
    live = await stub.ListOrders(
        settlement_pb2.SettlementListOrdersRequest(account_id=1, open_only=True)
    )
    assert [o.order_id for o in live.orders] == [ids["M3"]]
    other = await stub.ListOrders(
        settlement_pb2.SettlementListOrdersRequest(account_id=1, symbol="ETH-USDT")
    )
    assert list(other.orders) == []
    paged = await all_pages(
        lambda t: stub.ListOrders(settlement_pb2.SettlementListOrdersRequest(
            account_id=3, page_size=1, page_token=t)),
        "orders",
    )  # fmt: skip
    assert [o.order_id for p in paged for o in p] == [ids["MK"], ids["F1"], ids["I1"]]


async def check_ledger(stub: Any, dsn: str) -> None:
    balances = {
        (r["account_id"], r["asset"]): r["balance"]
        for r in await fetch(dsn, "SELECT account_id, asset, balance FROM account_balances")
    }
    expected = {
        (1, "BTC"): "1.1", (1, "USDT"): "26933.04", (0, "BTC"): "0.0018", (0, "USDT"): "26.96",
        (2, "BTC"): "0.3992", (2, "USDT"): "87100", (3, "BTC"): "0.499", (3, "USDT"): "34940",
    }  # fmt: skip
    assert balances == {k: atoms(v, k[1]) for k, v in expected.items()}
    assert sum(v for (_, asset), v in balances.items() if asset == "USDT") == usdt("149000")
    connection_problems = await ledger_problems_of(dsn)
    assert connection_problems == []
    external = await fetch(
        dsn, "SELECT asset, sum(amount) AS total FROM ledger_entries WHERE account_id = $1 "
        "GROUP BY asset ORDER BY asset", EXTERNAL_ACCOUNT,
    )  # fmt: skip
    assert [(r["asset"], r["total"]) for r in external] == [
        ("BTC", -btc("2")),
        ("USDT", -usdt("149000")),
    ]

    pages = await all_pages(
        lambda t: stub.GetLedger(settlement_pb2.SettlementGetLedgerRequest(
            account_id=2, page_size=3, page_token=t)),
        "entries",
    )  # fmt: skip
    assert [len(p) for p in pages] == [3, 3, 2]
    entries = [e for page in pages for e in page]
    assert [e.entry_id for e in entries] == sorted((e.entry_id for e in entries), reverse=True)
    assert sum(e.amount for e in entries if e.asset == "USDT") == usdt("87100")
    kinds = {e.kind for e in entries}
    assert kinds == {common_pb2.LEDGER_ENTRY_KIND_DEPOSIT, common_pb2.LEDGER_ENTRY_KIND_WITHDRAWAL,
                     common_pb2.LEDGER_ENTRY_KIND_TRADE}  # fmt: skip
    only_btc = await stub.GetLedger(
        settlement_pb2.SettlementGetLedgerRequest(account_id=2, asset="BTC")
    )
    assert [e.amount for e in only_btc.entries] == [btc("0.0998"), btc("0.0998"), btc("0.1996")]
    fees = await stub.GetLedger(settlement_pb2.SettlementGetLedgerRequest(account_id=0))
    assert len(fees.entries) == 10
    assert {e.kind for e in fees.entries} == {common_pb2.LEDGER_ENTRY_KIND_FEE}
    assert {e.reference.split(":")[0] for e in fees.entries} == {"BTC-USDT"}


async def ledger_problems_of(dsn: str) -> list[str]:
    import asyncpg  # noqa: PLC0415 - the harness keeps asyncpg out of the module's imports

    connection = await asyncpg.connect(dsn)
    try:
        return await ledger_problems(connection)
    finally:
        await connection.close()


def row(candle: Any) -> tuple[int, ...]:
    return (
        candle.open_time_ns, candle.open, candle.high, candle.low, candle.close, candle.volume,
        candle.quote_volume, candle.trade_count,
    )  # fmt: skip


async def check_candles(stub: Any, dsn: str) -> None:
    minutes = [
        Candle("BTC-USDT", r["open_time_ns"], r["open"], r["high"], r["low"], r["close"],
               int(r["volume"]), int(r["quote_volume"]), r["trade_count"])
        for r in await fetch(dsn, "SELECT * FROM candles ORDER BY open_time_ns")
    ]  # fmt: skip
    assert [(c.open_time_ns - T0) // MINUTE_NS for c in minutes] == [0, 1, 5, 65, 24 * 60]
    for interval in CandleInterval:
        width = interval.nanoseconds
        first = T0 - T0 % width
        request = settlement_pb2.SettlementGetCandlesRequest(
            symbol="BTC-USDT", start_time_ns=first, limit=1000
        )
        request.interval = interval.value  # type: ignore[assignment]
        response = await stub.GetCandles(request)
        expected = [c for c in aggregate(minutes, width) if c.open_time_ns < first + 1000 * width]
        assert [row(c) for c in response.candles] == [row(c) for c in expected], interval.name
    days = await stub.GetCandles(settlement_pb2.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=common_pb2.CANDLE_INTERVAL_1D))  # fmt: skip
    assert [c.trade_count for c in days.candles] == [4, 1]
    assert (days.candles[0].open, days.candles[0].high, days.candles[0].close) == (
        usdt("30000"), usdt("30200"), usdt("30200"),
    )  # fmt: skip
    # The last two 5-minute intervals up to the latest trade: only the latest has trades.
    five = await stub.GetCandles(settlement_pb2.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=common_pb2.CANDLE_INTERVAL_5M, limit=2))  # fmt: skip
    latest = aggregate(minutes, 5 * MINUTE_NS)[-1]
    assert [c.open_time_ns for c in five.candles] == [latest.open_time_ns]
    # Ten 5-minute intervals from T0's: the two with trades in the first hour.
    ten = await stub.GetCandles(settlement_pb2.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=common_pb2.CANDLE_INTERVAL_5M, limit=10,
        start_time_ns=T0 - T0 % (5 * MINUTE_NS)))  # fmt: skip
    assert [c.trade_count for c in ten.candles] == [1, 2]
    before_day = await stub.GetCandles(settlement_pb2.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=common_pb2.CANDLE_INTERVAL_1M, limit=3,
        end_time_ns=T0 + 66 * MINUTE_NS))  # fmt: skip
    assert [(c.open_time_ns - T0) // MINUTE_NS for c in before_day.candles] == [65]
    window = await stub.GetCandles(settlement_pb2.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=common_pb2.CANDLE_INTERVAL_1H, start_time_ns=T0,
        end_time_ns=T0 + 2 * 60 * MINUTE_NS))  # fmt: skip
    # Hours opening in [T0, T0 + 2h): T0 is 22:14, so 23:00 only (22:00 opened before T0).
    assert [(c.open_time_ns, c.trade_count) for c in window.candles] == [
        (T0 - T0 % (60 * MINUTE_NS) + 60 * MINUTE_NS, 1)
    ]


async def check_ticker(stub: Any, clock: list[int]) -> None:
    request = settlement_pb2.SettlementGetTickerRequest(symbol="BTC-USDT")
    ticker = (await stub.GetTicker(request)).ticker
    # now = T0 + 1 day + 1 h: the window (T0 + 1 h, now] holds the 30200 and 29000 trades.
    assert (ticker.last_price, ticker.open_price, ticker.high_price, ticker.low_price) == (
        usdt("29000"), usdt("30200"), usdt("30200"), usdt("29000"),
    )  # fmt: skip
    assert (ticker.volume, ticker.quote_volume, ticker.trade_count) == (
        btc("0.2"), usdt("5920"), 2,
    )  # fmt: skip
    assert (ticker.open_time_ns, ticker.close_time_ns) == (clock[0] - DAY, clock[0])

    clock[0] = T0 + 5 * MINUTE_NS + 30 * 10**9  # the clock behind the latest trade
    behind = (await stub.GetTicker(request)).ticker
    assert behind.close_time_ns == T0 + DAY + 30 * 10**9
    # now = the latest trade (T0 + 1 day + 30 s): T1 at T0 + 2 s falls out of the window's
    # partial first minute, T2 at T0 + 60 s is in; the last minute is partial too.
    clock[0] = T0 + DAY + 30 * 10**9
    four = (await stub.GetTicker(request)).ticker
    assert (four.trade_count, four.open_price, four.volume) == (4, usdt("30000"), btc("0.7"))
    assert four.quote_volume == usdt("3000") + usdt("12040") + usdt("3020") + usdt("2900")
    clock[0] = T0 + DAY + 90 * 10**9  # T2 (at T0 + 60 s) is out now
    three = (await stub.GetTicker(request)).ticker
    assert (three.trade_count, three.open_price, three.volume) == (3, usdt("30100"), btc("0.6"))

    empty = (
        await stub.GetTicker(settlement_pb2.SettlementGetTickerRequest(symbol="ETH-USDT"))
    ).ticker
    assert (empty.last_price, empty.trade_count, empty.volume) == (0, 0, 0)
