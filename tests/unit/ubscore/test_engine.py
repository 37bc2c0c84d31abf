from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from ordermesh.events import (
    CancelRejected,
    EngineEvent,
    EventBody,
    NewOrder,
    OrderAccepted,
    OrderDone,
    TradeExecuted,
)
from ordermesh.model import (
    FEE_ACCOUNT,
    AccountId,
    OrderId,
    OrderStatus,
    RejectReason,
    Side,
    Symbol,
    TradeId,
)
from tests.unit.ubscore.harness import (
    BTC,
    BTC_UNIT,
    BTC_USDT,
    USDT,
    USDT_UNIT,
    Driver,
    limit,
    market,
)
from ubscore.core import ENGINE_TOPIC, InvariantError, UBSCore, UBSCoreConfig

PRICE = 100 * USDT_UNIT
QTY = 2 * 10**6  # 0.02 BTC
NOTIONAL = 2 * USDT_UNIT


class Engine:
    """Hand-made engine events for one symbol, numbered like the matcher numbers them."""

    def __init__(self, *cores: UBSCore, symbol: Symbol = BTC_USDT) -> None:
        self.cores = cores
        self.symbol = symbol
        self.sequence = 0

    def send(self, body: EventBody) -> EngineEvent:
        self.sequence += 1
        event = EngineEvent(self.symbol, self.sequence, 0, 0, b"", body)
        for core in self.cores:
            core.apply_engine(event, 0, self.sequence)
        return event


def trade(
    buy: NewOrder, sell: NewOrder, *, taker: Side, price: int = PRICE, quantity: int = QTY
) -> TradeExecuted:
    maker_order, taker_order = (sell, buy) if taker is Side.BUY else (buy, sell)
    quote_quantity = price * quantity // BTC_UNIT
    buyer_fee = quantity * (20 if taker is Side.BUY else 10) // 10_000
    seller_fee = quote_quantity * (20 if taker is Side.SELL else 10) // 10_000
    return TradeExecuted(
        trade_id=TradeId(1),
        maker_order_id=maker_order.order_id,
        taker_order_id=taker_order.order_id,
        maker_account_id=maker_order.account_id,
        taker_account_id=taker_order.account_id,
        taker_side=taker,
        price=price,
        quantity=quantity,
        quote_quantity=quote_quantity,
        maker_fee=buyer_fee if taker is Side.SELL else seller_fee,
        taker_fee=buyer_fee if taker is Side.BUY else seller_fee,
    )


def done(order: NewOrder, status: OrderStatus = OrderStatus.FILLED) -> OrderDone:
    return OrderDone(
        order.order_id,
        order.account_id,
        order.client_order_id,
        status,
        RejectReason.UNSPECIFIED,
        0,
        0,
        0,
        order.side,
        order.price,
    )


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.deposit(1, USDT, 1_000 * USDT_UNIT, "d1")
    d.deposit(2, BTC, BTC_UNIT, "d2")
    return d


def balances(core: UBSCore, account: int) -> dict[str, tuple[int, int]]:
    return {b.asset: (b.available, b.frozen) for b in core.balances(AccountId(account))}


def test_a_trade_with_a_buying_taker_moves_both_sides_and_both_fees(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s")).order
    Engine(driver.core).send(trade(buy, sell, taker=Side.BUY))
    assert balances(driver.core, 1) == {"USDT": (998 * USDT_UNIT, 0), "BTC": (QTY - 4_000, 0)}
    assert balances(driver.core, 2) == {"BTC": (BTC_UNIT - QTY, 0), "USDT": (NOTIONAL - 2_000, 0)}
    assert balances(driver.core, FEE_ACCOUNT) == {"BTC": (4_000, 0), "USDT": (2_000, 0)}
    assert [o.remaining for o in driver.core.open_orders(AccountId(1))] == [0]


def test_a_trade_with_a_selling_taker_charges_the_taker_fee_to_the_seller(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s")).order
    Engine(driver.core).send(trade(buy, sell, taker=Side.SELL))
    assert balances(driver.core, 1)["BTC"] == (QTY - 2_000, 0)
    assert balances(driver.core, 2)["USDT"] == (NOTIONAL - 4_000, 0)
    assert balances(driver.core, FEE_ACCOUNT) == {"BTC": (2_000, 0), "USDT": (4_000, 0)}


def test_a_fill_at_a_better_price_leaves_the_difference_until_done(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE + USDT_UNIT, QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s")).order
    engine = Engine(driver.core)
    engine.send(trade(buy, sell, taker=Side.SELL))
    assert balances(driver.core, 1)["USDT"] == (998 * USDT_UNIT - 20_000, 20_000)
    engine.send(done(buy))
    assert balances(driver.core, 1)["USDT"] == (998 * USDT_UNIT, 0)
    assert driver.core.open_orders(AccountId(1)) == ()


def test_a_cancel_after_a_partial_fill_releases_the_rest(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, 2 * QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, 2 * QTY, "s")).order
    engine = Engine(driver.core)
    engine.send(trade(buy, sell, taker=Side.BUY))
    engine.send(done(buy, OrderStatus.CANCELED))
    engine.send(done(sell, OrderStatus.CANCELED))
    assert balances(driver.core, 1)["USDT"] == (998 * USDT_UNIT, 0)
    assert balances(driver.core, 2)["BTC"] == (BTC_UNIT - QTY, 0)


def test_a_market_buy_spends_from_its_budget_and_gets_the_rest_back(driver: Driver):
    sell = driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s")).order
    buy = driver.reserve(market(1, Side.BUY, quote_quantity=50 * USDT_UNIT)).order
    engine = Engine(driver.core)
    engine.send(trade(buy, sell, taker=Side.BUY))
    assert balances(driver.core, 1)["USDT"] == (950 * USDT_UNIT, 48 * USDT_UNIT)
    engine.send(done(buy, OrderStatus.EXPIRED))
    assert balances(driver.core, 1)["USDT"] == (998 * USDT_UNIT, 0)


def test_events_that_move_nothing_still_count_in_the_sequence(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    before = balances(driver.core, 1)
    engine = Engine(driver.core)
    engine.send(
        OrderAccepted(
            buy.order_id,
            buy.account_id,
            buy.client_order_id,
            buy.side,
            buy.order_type,
            buy.time_in_force,
            buy.price,
            buy.quantity,
            0,
        )
    )
    engine.send(
        CancelRejected(OrderId(77), AccountId(1), buy.client_order_id, RejectReason.UNKNOWN_ORDER)
    )
    assert balances(driver.core, 1) == before
    assert driver.core.snapshot().sequences[0].sequence == 2


def test_a_redelivered_event_is_applied_once(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, 2 * QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, 2 * QTY, "s")).order
    event = Engine(driver.core).send(trade(buy, sell, taker=Side.BUY))
    once = driver.core.snapshot()
    driver.core.apply_engine(event, 0, 1)  # the same offset again
    assert driver.core.snapshot() == once
    driver.core.apply_engine(event, 0, 5)  # a later offset, an old sequence
    assert driver.core.snapshot() == replace(once, offsets=driver.core.snapshot().offsets)
    assert driver.core.next_offset(ENGINE_TOPIC, 0) == 6


def test_a_sequence_gap_stops_the_core(driver: Driver):
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    with pytest.raises(InvariantError, match="missing"):
        driver.core.apply_engine(EngineEvent(BTC_USDT, 2, 0, 0, b"", done(buy)), 0, 0)


@pytest.fixture
def pair(driver: Driver) -> tuple[Driver, NewOrder, NewOrder]:
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    sell = driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s")).order
    return driver, buy, sell


BROKEN_TRADES = {
    "unknown order": ({"maker_order_id": OrderId(999)}, "not open here"),
    "spends more than reserved": (
        {"quantity": 2 * QTY, "quote_quantity": 2 * NOTIONAL},
        "would spend",
    ),
    "notional is not price x quantity": ({"quote_quantity": NOTIONAL + 1}, "not price x"),
    "off the lot grid": ({"quantity": QTY + 1, "quote_quantity": QTY + 1}, "grid"),
    "off the tick grid": ({"price": PRICE + 1, "quote_quantity": NOTIONAL}, "grid|not a whole"),
    "no quantity": ({"quantity": 0, "quote_quantity": 0}, "no quantity"),
    "fee above what is received": ({"taker_fee": QTY + 1}, "fees"),
    "negative fee": ({"maker_fee": -1}, "fees"),
    "one order on both sides": ({"maker_order_id": OrderId(1)}, "both sides"),
    "the order of another account": ({"maker_account_id": AccountId(1)}, "names order"),
    "the buyer is a sell order": ({"taker_side": Side.SELL}, "names order"),
}


@pytest.mark.parametrize(("changes", "match"), BROKEN_TRADES.values(), ids=BROKEN_TRADES.keys())
def test_a_trade_the_state_cannot_take_stops_the_core(
    pair: tuple[Driver, NewOrder, NewOrder], changes: dict[str, Any], match: str
):
    driver, buy, sell = pair
    before = driver.core.snapshot().balances
    with pytest.raises(InvariantError, match=match):
        Engine(driver.core).send(replace(trade(buy, sell, taker=Side.BUY), **changes))
    assert driver.core.snapshot().balances == before


def test_a_done_for_an_unknown_or_finished_order_stops_the_core(
    pair: tuple[Driver, NewOrder, NewOrder],
):
    driver, buy, _ = pair
    engine = Engine(driver.core)
    engine.send(done(buy))
    with pytest.raises(InvariantError, match="not open"):
        engine.send(done(buy))


def test_a_done_that_is_not_final_stops_the_core(pair: tuple[Driver, NewOrder, NewOrder]):
    driver, buy, _ = pair
    with pytest.raises(InvariantError, match="status"):
        Engine(driver.core).send(done(buy, OrderStatus.PARTIALLY_FILLED))


def test_an_unknown_symbol_stops_the_core(pair: tuple[Driver, NewOrder, NewOrder]):
    driver, buy, sell = pair
    with pytest.raises(InvariantError, match="not traded"):
        Engine(driver.core, symbol=Symbol("DOGE-USDT")).send(trade(buy, sell, taker=Side.BUY))


def test_each_shard_applies_its_own_side_and_together_they_conserve():
    shards = [Driver(UBSCoreConfig(shard_index=i, shard_count=2)) for i in range(2)]
    shards[0].deposit(2, USDT, 10 * USDT_UNIT, "d2")
    shards[1].deposit(3, BTC, BTC_UNIT, "d3")
    buy = shards[0].reserve(limit(2, Side.BUY, PRICE, QTY, "b")).order
    sell = shards[1].reserve(limit(3, Side.SELL, PRICE, QTY, "s")).order
    assert (buy.order_id % 2, sell.order_id % 2) == (0, 1)
    engine = Engine(shards[0].core, shards[1].core)
    engine.send(trade(buy, sell, taker=Side.BUY))
    engine.send(done(buy))
    engine.send(done(sell))
    assert balances(shards[0].core, 2) == {"USDT": (8 * USDT_UNIT, 0), "BTC": (QTY - 4_000, 0)}
    assert balances(shards[1].core, 3) == {
        "BTC": (BTC_UNIT - QTY, 0),
        "USDT": (NOTIONAL - 2_000, 0),
    }
    assert balances(shards[0].core, FEE_ACCOUNT) == {"BTC": (4_000, 0)}
    assert balances(shards[1].core, FEE_ACCOUNT) == {"USDT": (2_000, 0)}
    held: Counter[str] = Counter()
    for shard in shards:
        for entry in shard.core.snapshot().balances:
            held[entry.asset] += entry.available + entry.frozen
    assert held == Counter({"USDT": 10 * USDT_UNIT, "BTC": BTC_UNIT})
    for shard in shards:
        shard.core.finish_replay()  # each shard alone is consistent, if not conserving
    assert shards[1].core.balances(AccountId(2)) == ()
