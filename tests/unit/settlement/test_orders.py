"""Order state merged from ordermesh.orders and ordermesh.engine, in any relative order."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.events import EngineEvent, NewOrder, OrderAccepted, OrderDone
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from settlement.core import OrderConflictError, OrderRow, fold_orders
from settlement.core.orders import OrderChange
from tests.unit.settlement.exchange import (
    BTC_USDT,
    BUY,
    SECOND,
    SELL,
    T0,
    Exchange,
    atoms,
    random_session,
)

PRICE = atoms("30000", "USDT")
LOT = atoms("0.01", "BTC")


def changes(exchange: Exchange) -> list[OrderChange]:
    return [
        record.decoded
        for record in exchange.records
        if isinstance(record.decoded, NewOrder | EngineEvent)
    ]


def fold(exchange: Exchange) -> dict[int, OrderRow]:
    return fold_orders({}, changes(exchange))


def test_resting_partly_filled_then_canceled() -> None:
    exchange = Exchange()
    maker, _ = exchange.order(1, SELL, PRICE, 3 * LOT, post_only=True)
    taker, _ = exchange.order(2, BUY, PRICE, LOT, client="mine")
    exchange.cancel(1, maker)
    rows = fold(exchange)

    assert rows[taker].status is OrderStatus.FILLED
    assert rows[taker].client_order_id == "mine"
    assert (rows[taker].filled_quantity, rows[taker].filled_quote_quantity) == (
        LOT,
        atoms("300", "USDT"),
    )
    resting = rows[maker]
    assert resting.status is OrderStatus.CANCELED
    assert resting.filled_quantity == LOT
    assert resting.accepted
    assert resting.post_only is True
    assert resting.self_trade_prevention is SelfTradePrevention.NONE
    assert (resting.side, resting.order_type, resting.time_in_force) == (
        Side.SELL,
        OrderType.LIMIT,
        TimeInForce.GTC,
    )
    assert resting.created_ns == T0 + 1_000_000_000
    assert resting.updated_ns == T0 + 3_000_000_000


def test_a_live_order_stays_partly_filled() -> None:
    exchange = Exchange()
    maker, _ = exchange.order(1, SELL, PRICE, 3 * LOT)
    exchange.order(2, BUY, PRICE, LOT)
    row = fold(exchange)[maker]
    assert row.status is OrderStatus.PARTIALLY_FILLED
    assert row.filled_quantity == LOT
    assert not row.terminal


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (
            {"post_only": True, "price": PRICE + atoms("1", "USDT")},
            RejectReason.POST_ONLY_WOULD_TAKE,
        ),
        ({"tif": TimeInForce.FOK, "quantity": 5 * LOT}, RejectReason.FOK_NOT_FILLABLE),
    ],
)
def test_rejections_end_without_acceptance(
    options: dict[str, object], reason: RejectReason
) -> None:
    exchange = Exchange()
    exchange.order(1, SELL, PRICE, LOT)
    values: dict[str, object] = {"price": PRICE, "quantity": LOT}
    values.update(options)
    order_id, _ = exchange.order(2, BUY, **values)  # type: ignore[arg-type]
    row = fold(exchange)[order_id]
    assert (row.status, row.reason, row.accepted) == (OrderStatus.REJECTED, reason, False)
    assert row.post_only is options.get("post_only", False)


def test_duplicate_order_id_does_not_touch_the_live_order() -> None:
    exchange = Exchange()
    live, _ = exchange.order(1, SELL, PRICE, 2 * LOT, client="first")
    events = exchange.order(7, BUY, PRICE - 10_000, LOT, order_id=live, client="second")[1]
    assert [type(e.body) for e in events] == [OrderDone]
    assert events[0].body.reason is RejectReason.DUPLICATE_ORDER_ID  # type: ignore[union-attr]

    row = fold(exchange)[live]
    assert row.status is OrderStatus.NEW
    assert (row.account_id, row.client_order_id, row.side, row.quantity) == (
        1,
        "first",
        Side.SELL,
        2 * LOT,
    )
    # The live order still trades and ends normally afterwards.
    exchange.order(2, BUY, PRICE, 2 * LOT)
    row = fold(exchange)[live]
    assert (row.status, row.filled_quantity) == (OrderStatus.FILLED, 2 * LOT)


def test_duplicate_client_order_id_rejects_the_new_order_only() -> None:
    exchange = Exchange()
    live, _ = exchange.order(1, SELL, PRICE, LOT, client="same")
    again, _ = exchange.order(1, SELL, PRICE, LOT, client="same")
    rows = fold(exchange)
    assert rows[live].status is OrderStatus.NEW
    assert (rows[again].status, rows[again].reason) == (
        OrderStatus.REJECTED,
        RejectReason.DUPLICATE_ORDER_ID,
    )
    assert rows[again].side is Side.SELL  # its own NewOrder filled its static fields


def test_the_engine_first_then_the_command_gives_the_same_row() -> None:
    exchange = Exchange()
    exchange.order(1, SELL, PRICE, LOT)
    exchange.order(2, BUY, PRICE, 2 * LOT, tif=TimeInForce.IOC)
    in_order = changes(exchange)
    engine_first = [c for c in in_order if isinstance(c, EngineEvent)] + [
        c for c in in_order if isinstance(c, NewOrder)
    ]
    assert fold_orders({}, engine_first) == fold_orders({}, in_order)


def test_only_changed_rows_come_back() -> None:
    exchange = Exchange()
    live, _ = exchange.order(1, SELL, PRICE, LOT)
    before = fold(exchange)
    duplicate = NewOrder(
        BTC_USDT, OrderId(live), AccountId(1), ClientOrderId("x"), Side.BUY, OrderType.LIMIT,
        TimeInForce.GTC, 1, 1, 0, False, SelfTradePrevention.NONE, T0 + 99 * SECOND,
    )  # fmt: skip
    assert fold_orders(before, [duplicate]) == {}


def accepted_event(order_id: int, account: int = 1, symbol: str = BTC_USDT) -> EngineEvent:
    body = OrderAccepted(
        OrderId(order_id), AccountId(account), ClientOrderId("c"), Side.BUY, OrderType.LIMIT,
        TimeInForce.GTC, PRICE, LOT, 0,
    )  # fmt: skip
    return EngineEvent(symbol, 1, 0, T0, bytes(32), body)  # type: ignore[arg-type]


def done_event(order_id: int, status: OrderStatus, account: int = 1) -> EngineEvent:
    body = OrderDone(
        OrderId(order_id), AccountId(account), ClientOrderId("c"), status,
        RejectReason.UNSPECIFIED, 0, LOT, 0, Side.BUY, PRICE,
    )  # fmt: skip
    return EngineEvent(BTC_USDT, 2, 1, T0, bytes(32), body)


@pytest.mark.parametrize(
    ("stream", "words"),
    [
        ([accepted_event(5), accepted_event(5)], "accepted twice"),
        (
            [done_event(5, OrderStatus.CANCELED), done_event(5, OrderStatus.EXPIRED)],
            "ended twice: CANCELED, then EXPIRED",
        ),
        ([accepted_event(5, account=1), done_event(5, OrderStatus.CANCELED, 2)], "account 2"),
        ([accepted_event(5), accepted_event(5, symbol="ETH-USDT")], "on ETH-USDT"),
    ],
)
def test_records_that_cannot_both_be_true_raise(stream: list[OrderChange], words: str) -> None:
    with pytest.raises(OrderConflictError, match=words):
        fold_orders({}, stream)


def interleave(streams: list[list[OrderChange]], rng: random.Random) -> list[OrderChange]:
    """A random merge of `streams`, each kept in its own order."""
    cursors = [0] * len(streams)
    merged: list[OrderChange] = []
    while True:
        open_streams = [i for i, s in enumerate(streams) if cursors[i] < len(s)]
        if not open_streams:
            return merged
        i = rng.choice(open_streams)
        merged.append(streams[i][cursors[i]])
        cursors[i] += 1


@settings(max_examples=40, deadline=None)
@given(session=st.integers(0, 10_000), order=st.integers(0, 10_000))
def test_any_interleaving_of_partitions_and_any_batching_gives_the_same_rows(
    session: int, order: int
) -> None:
    exchange = random_session(session, 120)
    expected = fold(exchange)
    streams: dict[tuple[str, int], list[OrderChange]] = {}
    for record in exchange.records:
        if isinstance(record.decoded, NewOrder | EngineEvent):
            streams.setdefault((record.source.value, record.partition), []).append(record.decoded)
    rng = random.Random(order)
    merged = interleave(list(streams.values()), rng)

    rows: dict[int, OrderRow] = {}
    start = 0
    while start < len(merged):
        end = start + rng.randint(1, 60)
        rows.update(fold_orders(rows, merged[start:end]))
        start = end
    assert rows == expected


def test_rows_are_plain_values() -> None:
    exchange = Exchange()
    order_id, _ = exchange.order(1, SELL, PRICE, LOT)
    row = fold(exchange)[order_id]
    assert replace(row) == row
    assert row.terminal is False
