"""Engine events grouped by command, from a tail that starts anywhere, and order outcomes."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.outcomes import (
    ChainError,
    CommandGroup,
    CommandGroups,
    GroupKind,
    done_statuses,
    order_outcome,
)
from matcher.core import OrderBook
from ordermesh.events import CancelOrder, EngineEvent, NewOrder, OrderCommand
from ordermesh.markets import load_markets
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)

MARKET = load_markets().market("BTC-USDT")
SYMBOL = Symbol("BTC-USDT")
USDT, BTC = 10**6, 10**8


def order(
    order_id: int,
    side: Side,
    price: int,
    quantity: int,
    *,
    account: int = 1,
    tif: TimeInForce = TimeInForce.GTC,
    kind: OrderType = OrderType.LIMIT,
    budget: int = 0,
    post_only: bool = False,
) -> NewOrder:
    return NewOrder(
        SYMBOL, OrderId(order_id), AccountId(account), ClientOrderId(f"c{order_id}"), side,
        kind, tif, price, quantity, budget, post_only, SelfTradePrevention.NONE, 1_000 + order_id,
    )  # fmt: skip


def cancel(order_id: int, account: int = 1) -> CancelOrder:
    return CancelOrder(SYMBOL, AccountId(account), OrderId(order_id), ClientOrderId(""), 5)


class Log:
    """A book and the events it emitted, command by command."""

    def __init__(self) -> None:
        self.book = OrderBook(MARKET)
        self.offset = 0
        self.commands: list[list[EngineEvent]] = []

    def apply(self, command: OrderCommand) -> list[EngineEvent]:
        self.offset += 2  # offsets need not be contiguous (transaction markers)
        events = self.book.apply(command, self.offset)
        self.commands.append(events)
        return events


def feed(groups: CommandGroups, events: list[EngineEvent]) -> list[list[EngineEvent]]:
    """Add events one by one; return each completed group's events."""
    return [list(group.events) for event in events for group in groups.add(event, 0)]


def test_groups_from_a_tail_that_starts_mid_log() -> None:
    log = Log()
    log.apply(order(1, Side.SELL, 100 * USDT, BTC))  # before the tail started
    log.apply(order(2, Side.SELL, 101 * USDT, BTC))
    groups = CommandGroups()
    first = log.apply(order(3, Side.BUY, 101 * USDT, 5 * BTC // 2))  # takes both, rests
    assert len(first) > 1
    assert feed(groups, first) == []  # the previous hash is unknown: not complete yet
    assert groups.open_partitions() == {0}
    second = log.apply(order(4, Side.SELL, 99 * USDT, BTC // 10))
    # The next command's first event closes the first group; the hash closes the second.
    assert [len(g) for g in feed(groups, second[:1])] == [len(first)]
    assert groups.open_partitions() == set()
    assert feed(groups, second[1:]) == [second]
    third = log.apply(cancel(3))
    assert feed(groups, third) == [third]


def test_flush_completes_a_first_group_at_the_end_of_the_partition() -> None:
    log = Log()
    groups = CommandGroups()
    resting = log.apply(order(1, Side.SELL, 100 * USDT, BTC))
    assert feed(groups, resting) == []
    assert groups.flush(1) == []  # another partition
    assert [list(g.events) for g in groups.flush(0)] == [resting]
    taker = log.apply(order(2, Side.BUY, 100 * USDT, BTC))
    assert feed(groups, taker) == [taker]


def test_a_gap_or_an_altered_event_stops_the_tail() -> None:
    log = Log()
    groups = CommandGroups()
    feed(groups, log.apply(order(1, Side.SELL, 100 * USDT, BTC)))
    feed(groups, log.apply(order(2, Side.SELL, 100 * USDT, BTC)))
    log.apply(order(3, Side.SELL, 100 * USDT, BTC))  # lost
    with pytest.raises(ChainError, match="gap"):
        feed(groups, log.apply(order(4, Side.SELL, 100 * USDT, BTC)))
    groups = CommandGroups()
    feed(groups, log.apply(order(5, Side.SELL, 100 * USDT, BTC)))
    taker = log.apply(order(6, Side.BUY, 100 * USDT, BTC))
    feed(groups, taker[:1])
    altered = dataclasses.replace(taker[1], timestamp_ns=taker[1].timestamp_ns + 1)
    feed(groups, [altered, *taker[2:]])  # cannot tell yet: the group is the first one
    with pytest.raises(ChainError):
        feed(groups, log.apply(order(7, Side.SELL, 100 * USDT, BTC)))


def outcome_of(log: Log, command: NewOrder):
    events = log.apply(command)
    groups = CommandGroups()
    (group,) = feed(groups, events) or [list(g.events) for g in groups.flush(0)]
    whole = CommandGroup(SYMBOL, tuple(group))
    assert whole.kind is GroupKind.NEW_ORDER
    assert whole.subject == (command.account_id, command.order_id, command.client_order_id)
    return order_outcome(whole, MARKET), whole


def test_outcome_rested() -> None:
    outcome, _ = outcome_of(Log(), order(1, Side.BUY, 100 * USDT, BTC))
    assert (outcome.status, outcome.filled_quantity, outcome.fills) == (OrderStatus.NEW, 0, ())


def test_outcome_partly_filled_and_rested_with_fees_in_what_it_receives() -> None:
    log = Log()
    log.apply(order(1, Side.SELL, 100 * USDT, BTC // 2, account=2))
    outcome, group = outcome_of(log, order(2, Side.BUY, 101 * USDT, BTC))
    assert outcome.status is OrderStatus.PARTIALLY_FILLED
    assert (outcome.filled_quantity, outcome.filled_quote_quantity) == (BTC // 2, 50 * USDT)
    (fill,) = outcome.fills
    assert (fill.price, fill.quantity, fill.quote_quantity) == (100 * USDT, BTC // 2, 50 * USDT)
    assert (fill.fee, fill.fee_asset, fill.maker) == (BTC // 2 * 20 // 10_000, "BTC", False)
    assert done_statuses(group) == [(1, OrderStatus.FILLED)]


def test_outcome_filled_sell_pays_its_fee_in_quote() -> None:
    log = Log()
    log.apply(order(1, Side.BUY, 100 * USDT, BTC, account=2))
    outcome, _ = outcome_of(log, order(2, Side.SELL, 99 * USDT, BTC))
    assert (outcome.status, outcome.filled_quantity) == (OrderStatus.FILLED, BTC)
    assert (outcome.fills[0].fee, outcome.fills[0].fee_asset) == (100 * USDT * 20 // 10_000, "USDT")


def test_outcome_expired_and_rejected() -> None:
    log = Log()
    outcome, _ = outcome_of(log, order(1, Side.BUY, 100 * USDT, BTC, tif=TimeInForce.IOC))
    assert (outcome.status, outcome.reason) == (OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY)
    log.apply(order(2, Side.SELL, 100 * USDT, BTC, account=2))
    outcome, _ = outcome_of(log, order(3, Side.BUY, 100 * USDT, BTC, post_only=True))
    assert (outcome.status, outcome.reason) == (
        OrderStatus.REJECTED,
        RejectReason.POST_ONLY_WOULD_TAKE,
    )
    budget = order(4, Side.BUY, 0, 0, kind=OrderType.MARKET, tif=TimeInForce.IOC, budget=50 * USDT)
    outcome, _ = outcome_of(log, budget)
    assert (outcome.status, outcome.filled_quantity) == (OrderStatus.FILLED, BTC // 2)


def test_cancel_groups() -> None:
    log = Log()
    groups = CommandGroups()
    feed(groups, log.apply(order(1, Side.BUY, 100 * USDT, BTC)))
    # The cancel's event closes the order's group, then its own by the hash.
    placed, canceled = [g for e in log.apply(cancel(1)) for g in groups.add(e, 0)]
    assert placed.kind is GroupKind.NEW_ORDER
    assert groups.flush(0) == []
    assert canceled.kind is GroupKind.CANCEL
    assert done_statuses(canceled) == [(1, OrderStatus.CANCELED)]
    (rejected,) = [g for e in log.apply(cancel(1)) for g in groups.add(e, 0)]
    assert rejected.kind is GroupKind.CANCEL
    assert rejected.subject[:2] == (1, 1)
    assert done_statuses(rejected) == []
