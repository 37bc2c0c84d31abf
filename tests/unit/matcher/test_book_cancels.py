"""Cancels, refusals of impossible orders, the event envelope, offsets and views."""

from __future__ import annotations

import dataclasses

import pytest

from matcher.core import OrderBook, WrongSymbolError, verify_chain
from ordermesh import amounts
from ordermesh.events import TradeExecuted
from ordermesh.model import (
    OrderStatus,
    RejectReason,
)
from tests.unit.matcher.helpers import (
    BUY,
    ETH,
    IOC,
    MARKET,
    SELL,
    Driver,
    btc,
    cancel,
    cancel_rejected,
    dones,
    kinds,
    limit,
    market,
    order_done,
    trades,
    usdt,
)


@pytest.fixture
def driver() -> Driver:
    return Driver()


# -- cancels ---------------------------------------------------------------------------------


def test_cancel_by_order_id_reports_what_was_left(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, BUY, usdt(100), btc("0.25"), account=2))

    bodies = driver.send(cancel(1))

    assert bodies == [
        order_done(
            1,
            OrderStatus.CANCELED,
            RejectReason.UNSPECIFIED,
            btc("0.25"),
            btc("0.75"),
            usdt(25),
            side=SELL,
            price=usdt(100),
        )
    ]
    assert len(driver.book) == 0
    assert driver.book.best_ask() is None


def test_cancel_by_client_order_id(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1), client="mine"))

    bodies = driver.send(cancel(client="mine"))

    assert kinds(bodies) == ["D:CANCELED"]
    assert driver.send(cancel(client="mine")) == [cancel_rejected(cancel(client="mine"))]


def test_client_order_ids_are_per_account(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1), account=1, client="same"))
    driver.send(limit(2, BUY, usdt(100), btc(1), account=2, client="same"))

    bodies = driver.send(cancel(client="same", account=2))

    assert dones(bodies)[0].order_id == 2
    assert driver.resting(1) is not None


@pytest.mark.parametrize(
    "command",
    [
        cancel(99),
        cancel(client="nope"),
        cancel(),
        cancel(1, account=2),  # someone else's order is unknown to you
        cancel(client="c1", account=2),
    ],
)
def test_cancel_of_an_order_that_is_not_yours_or_not_there(driver: Driver, command) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1)))

    bodies = driver.send(command)

    assert bodies == [cancel_rejected(command)]
    assert driver.resting(1) is not None


def test_cancel_of_a_filled_order_is_rejected(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(100), btc(1), account=2))

    assert kinds(driver.send(cancel(1))) == ["R"]


def test_canceled_order_in_the_middle_of_its_level_is_skipped(driver: Driver) -> None:
    for order_id in (1, 2, 3):
        driver.send(limit(order_id, SELL, usdt(100), btc(1)))
    driver.send(cancel(2))

    bodies = driver.send(limit(4, BUY, usdt(100), btc(2), account=9))

    assert [t.maker_order_id for t in trades(bodies)] == [1, 3]


def test_heavy_churn_behind_a_standing_order_keeps_the_level_right(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    for order_id in range(2, 200):
        driver.send(limit(order_id, SELL, usdt(100), btc(1)))
        driver.send(cancel(order_id))
    driver.send(limit(200, SELL, usdt(100), btc(1)))

    (level,) = driver.book.depth(SELL)
    bodies = driver.send(limit(201, BUY, usdt(100), btc(3), account=9))

    assert (level.order_count, level.quantity) == (2, btc(2))
    assert [t.maker_order_id for t in trades(bodies)] == [1, 200]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (limit(0, BUY, usdt(100), btc(1)), RejectReason.INVALID_ORDER_ID),
        (limit(1, BUY, usdt(100), btc(1), client="x" * 65), RejectReason.INVALID_CLIENT_ORDER_ID),
        (limit(1, BUY, usdt(100) + 1, btc(1)), RejectReason.INVALID_PRICE),
        (limit(1, BUY, 0, btc(1)), RejectReason.INVALID_PRICE),
        (limit(1, BUY, -usdt(100), btc(1)), RejectReason.INVALID_PRICE),
        (limit(1, BUY, usdt(100), btc(1) + 1), RejectReason.INVALID_QUANTITY),
        (limit(1, BUY, usdt(100), 0), RejectReason.INVALID_QUANTITY),
        (limit(1, BUY, usdt("0.01"), btc(1)), RejectReason.BELOW_MIN_NOTIONAL),
        (limit(1, BUY, amounts.INT64_MAX // 10_000 * 10_000, btc(2)), RejectReason.AMOUNT_OVERFLOW),
        (limit(1, BUY, usdt(100), btc(1), tif=IOC, post_only=True), RejectReason.INVALID_POST_ONLY),
        (market(1, SELL, 0), RejectReason.INVALID_QUANTITY),
        (market(1, SELL, btc(1), budget=usdt(1)), RejectReason.INVALID_QUOTE_QUANTITY),
        (market(1, BUY, btc(1)), RejectReason.INVALID_QUOTE_QUANTITY),
        (market(1, BUY, budget=usdt("0.5")), RejectReason.BELOW_MIN_NOTIONAL),
        (market(1, BUY, btc(1) + 1, budget=usdt(5)), RejectReason.INVALID_QUANTITY),
    ],
)
def test_impossible_orders_are_rejected_with_a_reason(driver: Driver, command, reason) -> None:
    bodies = driver.send(command)

    assert bodies == [
        order_done(
            command.order_id,
            OrderStatus.REJECTED,
            reason,
            0,
            command.quantity,
            0,
            side=command.side,
            price=command.price,
            account=command.account_id,
            client=command.client_order_id,
        )
    ]
    assert len(driver.book) == 0


def test_below_minimum_quantity_is_rejected() -> None:
    coarse = OrderBook(dataclasses.replace(MARKET, min_quantity=btc(1)))

    (event,) = coarse.apply(limit(1, BUY, usdt(100), btc("0.5")), 0)

    assert dones([event.body])[0].reason == RejectReason.BELOW_MIN_QUANTITY


def test_market_order_with_a_price_or_post_only_is_rejected(driver: Driver) -> None:
    priced = dataclasses.replace(market(1, SELL, btc(1)), price=usdt(1))
    post_only = dataclasses.replace(market(2, SELL, btc(1)), post_only=True)

    assert dones(driver.send(priced))[0].reason == RejectReason.INVALID_PRICE
    assert dones(driver.send(post_only))[0].reason == RejectReason.INVALID_POST_ONLY


def test_duplicate_live_order_id_or_client_order_id_is_rejected(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1), client="a"))

    same_id = driver.send(limit(1, BUY, usdt(99), btc(1), client="b"))
    same_client = driver.send(limit(2, BUY, usdt(99), btc(1), client="a"))
    other_account = driver.send(limit(3, BUY, usdt(99), btc(1), client="a", account=2))

    assert dones(same_id)[0].reason == RejectReason.DUPLICATE_ORDER_ID
    assert dones(same_client)[0].reason == RejectReason.DUPLICATE_ORDER_ID
    assert kinds(other_account) == ["A"]
    resting = driver.resting(1)
    assert resting is not None
    assert resting.price == usdt(100)


def test_an_empty_client_order_id_is_never_a_duplicate(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1), client=""))

    assert kinds(driver.send(limit(2, BUY, usdt(100), btc(1), client=""))) == ["A"]
    assert kinds(driver.send(cancel(client=""))) == ["R"]


# -- envelope, offsets and views -------------------------------------------------------------


def test_events_carry_symbol_sequence_offset_timestamp_and_a_verifiable_chain(
    driver: Driver,
) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1), timestamp=111))
    driver.send(limit(2, BUY, usdt(100), btc(1), account=2, timestamp=222))

    events = driver.events
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert [e.input_offset for e in events] == [0, 1, 1, 1, 1]
    assert [e.timestamp_ns for e in events] == [111, 222, 222, 222, 222]
    assert {e.symbol for e in events} == {"BTC-USDT"}
    assert len({e.hash for e in events[1:]}) == 1  # one link per command
    assert verify_chain(events) == (5, driver.book.last_hash)
    assert driver.book.sequence == 5


def test_a_command_at_or_below_the_last_offset_is_ignored(driver: Driver) -> None:
    book = driver.book
    book.apply(limit(1, BUY, usdt(100), btc(1)), 10)

    assert book.apply(limit(2, BUY, usdt(100), btc(1)), 10) == []
    assert book.apply(cancel(1), 3) == []
    assert book.last_offset == 10
    assert 2 not in book
    assert len(book.apply(cancel(1), 11)) == 1


def test_a_command_for_another_symbol_is_a_bug_not_a_rejection(driver: Driver) -> None:
    with pytest.raises(WrongSymbolError, match="ETH-USDT"):
        driver.book.apply(limit(1, BUY, usdt(100), btc(1), symbol=ETH.symbol), 0)


def test_depth_aggregates_levels_best_first(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(99), btc(1)))
    driver.send(limit(2, BUY, usdt(100), btc(1)))
    driver.send(limit(3, BUY, usdt(100), btc(2)))
    driver.send(limit(4, SELL, usdt(101), btc(1)))

    bids = [(v.price, v.quantity, v.order_count) for v in driver.book.depth(BUY)]

    assert bids == [(usdt(100), btc(3), 2), (usdt(99), btc(1), 1)]
    assert len(driver.book.depth(BUY, levels=1)) == 1
    assert [o.order_id for o in driver.book.orders(BUY)] == [2, 3, 1]
    assert driver.resting(99) is None


def test_events_are_real_frozen_event_values(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    events = driver.book.apply(limit(2, BUY, usdt(100), btc(1), account=2), 99)

    body = events[1].body
    assert type(body) is TradeExecuted
    with pytest.raises(AttributeError):
        body.price = 1  # type: ignore[misc]
    assert hash(body) == hash(TradeExecuted(**dataclasses.asdict(body)))
