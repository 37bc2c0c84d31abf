"""MARKET orders (by quantity and by quote budget) and self-trade prevention."""

from __future__ import annotations

import pytest

from ordermesh.model import (
    OrderStatus,
    RejectReason,
    SelfTradePrevention,
)
from tests.unit.matcher.helpers import (
    BUY,
    FOK,
    SELL,
    Driver,
    btc,
    dones,
    kinds,
    limit,
    market,
    trades,
    usdt,
)


@pytest.fixture
def driver() -> Driver:
    return Driver()


# -- market orders ---------------------------------------------------------------------------


def test_market_sell_by_quantity_sweeps_and_never_rests(driver: Driver) -> None:
    driver.send(limit(1, BUY, usdt(100), btc(1)))
    driver.send(limit(2, BUY, usdt(90), btc(1)))

    bodies = driver.send(market(3, SELL, btc(3)))

    assert [t.price for t in trades(bodies)] == [usdt(100), usdt(90)]
    done = dones(bodies)[-1]
    assert (done.status, done.reason) == (OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY)
    assert (done.filled_quantity, done.remaining_quantity) == (btc(2), btc(1))
    assert len(driver.book) == 0


def test_market_order_on_an_empty_side_expires(driver: Driver) -> None:
    bodies = driver.send(market(1, SELL, btc(1)))

    assert kinds(bodies) == ["A", "D:EXPIRED"]


def test_market_buy_by_budget_buys_what_the_budget_affords_in_lots(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc("0.5")))
    driver.send(limit(2, SELL, usdt(300), btc(1)))

    bodies = driver.send(market(3, BUY, budget=usdt(110)))

    first, second = trades(bodies)
    assert (first.price, first.quantity) == (usdt(100), btc("0.5"))
    # 60 USDT left buys 0.2 BTC at 300: exactly on the lot grid.
    assert (second.price, second.quantity) == (usdt(300), btc("0.2"))
    done = dones(bodies)[-1]
    assert (done.status, done.filled_quote_quantity) == (OrderStatus.FILLED, usdt(110))
    assert done.remaining_quantity == 0


def test_market_buy_by_budget_rounds_down_to_the_lot(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(300), btc(1)))

    bodies = driver.send(market(2, BUY, budget=usdt("10.01")))

    (trade,) = trades(bodies)
    assert trade.quantity == btc("0.0333")  # 10.01 / 300 = 0.033366.., down to 0.0001
    assert trade.quote_quantity == usdt("9.99")
    done = dones(bodies)[-1]
    assert done.status == OrderStatus.FILLED
    assert done.filled_quote_quantity <= usdt("10.01")


def test_market_buy_budget_too_small_for_one_lot_expires(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(30000), btc(1)))

    bodies = driver.send(market(2, BUY, budget=usdt(2)))  # one lot costs 3 USDT

    assert kinds(bodies) == ["A", "D:EXPIRED"]
    assert dones(bodies)[0].reason == RejectReason.INSUFFICIENT_FUNDS


def test_market_buy_by_budget_that_runs_out_of_book_expires(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc("0.1")))

    bodies = driver.send(market(2, BUY, budget=usdt(100)))

    done = dones(bodies)[-1]
    assert (done.status, done.reason) == (OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY)
    assert done.filled_quote_quantity == usdt(10)


def test_market_buy_by_quantity_never_spends_more_than_its_budget(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    driver.send(limit(2, SELL, usdt(200), btc(1)))

    bodies = driver.send(market(3, BUY, btc(2), budget=usdt(200)))

    assert [t.quantity for t in trades(bodies)] == [btc(1), btc("0.5")]
    done = dones(bodies)[-1]
    assert (done.status, done.reason) == (OrderStatus.EXPIRED, RejectReason.INSUFFICIENT_FUNDS)
    assert (done.filled_quantity, done.remaining_quantity) == (btc("1.5"), btc("0.5"))
    assert done.filled_quote_quantity == usdt(200)


def test_market_buy_by_quantity_within_budget_fills(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1)))

    bodies = driver.send(market(2, BUY, btc("0.5"), budget=usdt(1000)))

    done = dones(bodies)[-1]
    assert (done.status, done.filled_quote_quantity) == (OrderStatus.FILLED, usdt(50))


def test_fok_market_buy_by_budget_needs_the_book_to_outlast_the_budget(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc("0.5")))

    short = driver.send(market(2, BUY, budget=usdt(100), tif=FOK))
    enough = driver.send(market(3, BUY, budget=usdt(20), tif=FOK))

    assert dones(short)[0].reason == RejectReason.FOK_NOT_FILLABLE
    assert kinds(enough) == ["A", "T", "D:FILLED"]


def test_fok_market_buy_by_budget_running_out_at_the_last_maker_fills(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(96), btc("0.05")))

    bodies = driver.send(market(2, BUY, budget=usdt(1), tif=FOK))

    assert kinds(bodies) == ["A", "T", "D:FILLED"]
    assert trades(bodies)[0].quantity == btc("0.0104")  # 1 / 96 = 0.010416.., down to a lot


# -- self-trade prevention -------------------------------------------------------------------


def _own_book(driver: Driver) -> None:
    driver.send(limit(1, SELL, usdt(100), btc(1), account=5))
    driver.send(limit(2, SELL, usdt(100), btc(1), account=6))


def test_without_prevention_an_account_trades_with_itself(driver: Driver) -> None:
    _own_book(driver)

    bodies = driver.send(limit(3, BUY, usdt(100), btc(1), account=5))

    (trade,) = trades(bodies)
    assert trade.maker_account_id == trade.taker_account_id == 5


def test_expire_taker_stops_at_the_own_order(driver: Driver) -> None:
    _own_book(driver)

    bodies = driver.send(
        limit(3, BUY, usdt(100), btc(2), account=5, stp=SelfTradePrevention.EXPIRE_TAKER)
    )

    assert kinds(bodies) == ["A", "D:EXPIRED"]
    assert dones(bodies)[0].reason == RejectReason.SELF_TRADE_PREVENTED
    assert driver.resting(1) is not None  # the maker stays
    assert 3 not in driver.book  # a GTC taker does not rest after it


def test_expire_maker_expires_the_own_order_and_keeps_matching(driver: Driver) -> None:
    _own_book(driver)

    bodies = driver.send(
        limit(3, BUY, usdt(100), btc(2), account=5, stp=SelfTradePrevention.EXPIRE_MAKER)
    )

    assert kinds(bodies) == ["A", "D:EXPIRED", "T", "D:FILLED"]
    expired = dones(bodies)[0]
    assert (expired.order_id, expired.reason) == (1, RejectReason.SELF_TRADE_PREVENTED)
    assert expired.remaining_quantity == btc(1)
    assert trades(bodies)[0].maker_order_id == 2
    resting = driver.resting(3)
    assert resting is not None
    assert resting.remaining_quantity == btc(1)


def test_expire_both_expires_maker_and_taker(driver: Driver) -> None:
    _own_book(driver)

    bodies = driver.send(
        limit(3, BUY, usdt(100), btc(2), account=5, stp=SelfTradePrevention.EXPIRE_BOTH)
    )

    assert kinds(bodies) == ["A", "D:EXPIRED", "D:EXPIRED"]
    assert [d.order_id for d in dones(bodies)] == [1, 3]
    assert driver.resting(2) is not None
