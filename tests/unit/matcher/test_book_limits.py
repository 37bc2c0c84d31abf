"""Limit orders: resting, crossing, priority, fees, time in force, post-only."""

from __future__ import annotations

import pytest

from matcher.core import OrderBook
from ordermesh import amounts
from ordermesh.events import OrderAccepted
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
)
from tests.unit.matcher.helpers import (
    BUY,
    ETH,
    FOK,
    GTC,
    IOC,
    MARKET,
    SELL,
    Driver,
    btc,
    dones,
    kinds,
    limit,
    order_done,
    trades,
    usdt,
)


@pytest.fixture
def driver() -> Driver:
    return Driver()


# -- limit orders ----------------------------------------------------------------------------


def test_limit_order_that_does_not_cross_rests_with_only_an_acceptance(driver: Driver) -> None:
    bodies = driver.send(limit(1, BUY, usdt(100), btc(1)))

    assert bodies == [
        OrderAccepted(
            order_id=OrderId(1),
            account_id=AccountId(1),
            client_order_id=ClientOrderId("c1"),
            side=BUY,
            order_type=OrderType.LIMIT,
            time_in_force=GTC,
            price=usdt(100),
            quantity=btc(1),
            quote_budget=0,
        )
    ]
    assert driver.book.best_bid() == usdt(100)
    assert driver.book.best_ask() is None
    assert 1 in driver.book


def test_crossing_limit_fills_at_the_makers_price(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1), account=7))

    bodies = driver.send(limit(2, BUY, usdt(105), btc(1), account=8))

    assert kinds(bodies) == ["A", "T", "D:FILLED", "D:FILLED"]
    (trade,) = trades(bodies)
    assert trade.price == usdt(100)
    assert trade.quote_quantity == usdt(100)
    assert (trade.maker_order_id, trade.taker_order_id) == (1, 2)
    assert (trade.maker_account_id, trade.taker_account_id) == (7, 8)
    maker_done, taker_done = dones(bodies)
    assert maker_done.order_id == 1
    # Price improvement: 105 reserved, 100 spent.
    assert taker_done == order_done(
        2,
        OrderStatus.FILLED,
        RejectReason.UNSPECIFIED,
        btc(1),
        0,
        usdt(100),
        side=BUY,
        price=usdt(105),
        account=8,
    )
    assert len(driver.book) == 0


def test_partly_filled_limit_rests_its_remainder(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc("0.4")))

    bodies = driver.send(limit(2, BUY, usdt(100), btc(1)))

    assert kinds(bodies) == ["A", "T", "D:FILLED"]
    assert dones(bodies)[0].order_id == 1
    resting = driver.resting(2)
    assert resting is not None
    assert resting.remaining_quantity == btc("0.6")
    assert resting.filled_quote_quantity == usdt(40)
    assert driver.book.best_bid() == usdt(100)


def test_partly_filled_maker_keeps_its_place(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(100), btc(1)))

    driver.send(limit(3, BUY, usdt(100), btc("0.5")))
    bodies = driver.send(limit(4, BUY, usdt(100), btc("0.7")))

    assert [(t.maker_order_id, t.quantity) for t in trades(bodies)] == [
        (1, btc("0.5")),
        (2, btc("0.2")),
    ]


def test_price_then_time_priority(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(101), btc(1)))
    driver.send(limit(2, SELL, usdt(100), btc(1)))
    driver.send(limit(3, SELL, usdt(100), btc(1)))
    driver.send(limit(4, SELL, usdt(99), btc(1)))

    bodies = driver.send(limit(5, BUY, usdt(101), btc(4)))

    assert [(t.maker_order_id, t.price) for t in trades(bodies)] == [
        (4, usdt(99)),
        (2, usdt(100)),
        (3, usdt(100)),
        (1, usdt(101)),
    ]
    assert dones(bodies)[-1].filled_quote_quantity == usdt(400)


def test_a_sell_sweeps_bids_from_the_highest(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(98), btc(1)))
    driver.send(limit(2, BUY, usdt(99), btc(1)))

    bodies = driver.send(limit(3, SELL, usdt(98), btc(3)))

    assert [t.price for t in trades(bodies)] == [usdt(99), usdt(98)]
    assert driver.book.best_ask() == usdt(98)
    assert driver.book.best_bid() is None
    assert driver.resting(3) is not None


# -- fees ------------------------------------------------------------------------------------


def test_fees_are_charged_in_what_each_side_receives(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt("30000.01"), btc("0.1234"), account=2))

    bodies = driver.send(limit(2, BUY, usdt(30001), btc("0.1234"), account=3))

    (trade,) = trades(bodies)
    quote = amounts.notional(usdt("30000.01"), btc("0.1234"), 8)
    assert trade.quote_quantity == quote
    assert trade.taker_fee == amounts.fee(btc("0.1234"), MARKET.taker_fee_bps)  # buyer: base
    assert trade.maker_fee == amounts.fee(quote, MARKET.maker_fee_bps)  # seller: quote


def test_a_selling_taker_pays_its_fee_in_quote(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc("0.5"), account=2))

    (trade,) = trades(driver.send(limit(2, SELL, usdt(100), btc("0.5"), account=3)))

    assert trade.taker_fee == amounts.fee(usdt(50), MARKET.taker_fee_bps)
    assert trade.maker_fee == amounts.fee(btc("0.5"), MARKET.maker_fee_bps)


def test_fees_round_down_to_a_whole_atom() -> None:
    driver = Driver(OrderBook(ETH))  # no fees at all on this market
    driver.send(limit(1, SELL, usdt(100), btc(1), symbol=ETH.symbol))

    (trade,) = trades(driver.send(limit(2, BUY, usdt(100), btc(1), symbol=ETH.symbol)))

    assert (trade.maker_fee, trade.taker_fee) == (0, 0)


def test_trade_ids_count_from_one(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(101), btc(1)))

    bodies = driver.send(limit(3, BUY, usdt(101), btc(2)))

    assert [t.trade_id for t in trades(bodies)] == [1, 2]
    assert driver.book.next_trade_id == 3


# -- time in force ---------------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_expires_the_rest(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(102), btc(1)))

    bodies = driver.send(limit(3, BUY, usdt(101), btc(3), tif=IOC))

    assert kinds(bodies) == ["A", "T", "D:FILLED", "D:EXPIRED"]
    done = dones(bodies)[-1]
    assert (done.filled_quantity, done.remaining_quantity) == (btc(1), btc(2))
    assert done.reason == RejectReason.NO_LIQUIDITY
    assert 3 not in driver.book


def test_ioc_with_nothing_to_take_expires_untouched(driver: Driver) -> None:
    bodies = driver.send(limit(1, BUY, usdt(100), btc(1), tif=IOC))

    assert kinds(bodies) == ["A", "D:EXPIRED"]
    assert len(driver.book) == 0


def test_fok_that_can_fill_fills_completely(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(101), btc(1)))

    bodies = driver.send(limit(3, BUY, usdt(101), btc("1.5"), tif=FOK))

    assert kinds(bodies) == ["A", "T", "D:FILLED", "T", "D:FILLED"]
    assert dones(bodies)[-1].filled_quantity == btc("1.5")


def test_fok_that_cannot_fill_is_rejected_and_touches_nothing(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(102), btc(1)))
    before = driver.book.snapshot()

    bodies = driver.send(limit(3, BUY, usdt(101), btc("1.5"), tif=FOK))

    assert kinds(bodies) == ["D:REJECTED"]
    assert dones(bodies)[0].reason == RejectReason.FOK_NOT_FILLABLE
    after = driver.book.snapshot()
    assert (after.bids, after.asks, after.next_trade_id) == (
        before.bids,
        before.asks,
        before.next_trade_id,
    )


def test_fok_does_not_count_liquidity_self_trade_prevention_would_stop_at(
    driver: Driver,
) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1), account=5))
    driver.send(limit(2, SELL, usdt(100), btc(1), account=6))

    stopped = driver.send(
        limit(3, BUY, usdt(100), btc(2), account=5, tif=FOK, stp=SelfTradePrevention.EXPIRE_TAKER)
    )
    skipped = driver.send(
        limit(4, BUY, usdt(100), btc(1), account=5, tif=FOK, stp=SelfTradePrevention.EXPIRE_MAKER)
    )

    assert dones(stopped)[0].reason == RejectReason.FOK_NOT_FILLABLE
    assert kinds(skipped) == ["A", "D:EXPIRED", "T", "D:FILLED", "D:FILLED"]


# -- post only -------------------------------------------------------------------------------


def test_post_only_that_would_take_is_rejected(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))

    bodies = driver.send(limit(2, BUY, usdt(100), btc(1), post_only=True))

    assert kinds(bodies) == ["D:REJECTED"]
    assert dones(bodies)[0].reason == RejectReason.POST_ONLY_WOULD_TAKE
    assert driver.resting(1) is not None


def test_post_only_that_would_not_take_rests(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))

    bodies = driver.send(limit(2, BUY, usdt("99.99"), btc(1), post_only=True))

    assert kinds(bodies) == ["A"]
    assert driver.book.best_bid() == usdt("99.99")
