"""Book deltas against the real matcher book: snapshot + deltas = the book, at every command.

A seeded random flow (limit GTC/IOC/FOK, market by quantity and by budget, cancels, every
self-trade prevention mode, three accounts) runs through the matcher core; its command
groups go through `LiveOrders` and a `BookView` taken at some point, and a client-side
book applying the messages must equal `OrderBook.depth` within the depth after every
command. Also: the sequence rule a client checks, and orders older than the tail.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from gateway.outcomes import CommandGroup
from gateway.stream_hub import StreamEnded
from gateway.stream_market import BookView
from gateway.stream_state import LiveOrders
from matcher.core import OrderBook
from ordermesh.events import CancelOrder, NewOrder, OrderCommand
from ordermesh.markets import load_markets
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)
from ordermesh.v1 import common_pb2, gateway_pb2, matcher_pb2

MARKETS = load_markets()
MARKET = MARKETS.market("BTC-USDT")
SYMBOL = Symbol("BTC-USDT")
USDT, BTC = 10**6, 10**8
TICK, LOT = USDT // 100, BTC // 10_000

Level = tuple[str, str, int]


@dataclass
class LocalBook:
    """What a StreamMarketData client keeps: the snapshot, then every level it is told of."""

    sequence: int = 0
    bids: dict[str, tuple[str, int]] = field(default_factory=dict)
    asks: dict[str, tuple[str, int]] = field(default_factory=dict)
    trades: list[gateway_pb2.PublicTrade] = field(default_factory=list)
    started: bool = False

    def apply(self, message: gateway_pb2.StreamMarketDataResponse) -> None:
        """Apply one message; fail on a sequence that is neither the same nor the next."""
        kind = message.WhichOneof("data")
        if kind == "snapshot":
            assert not self.started, "a second snapshot"
            self.started = True
            self.sequence = message.sequence
            book = message.snapshot
            assert book.sequence == message.sequence
            self.bids = {lv.price: (lv.quantity, lv.order_count) for lv in book.bids}
            self.asks = {lv.price: (lv.quantity, lv.order_count) for lv in book.asks}
            return
        assert self.started, "a change before the snapshot"
        assert message.sequence in {self.sequence, self.sequence + 1}, (
            f"gap: {self.sequence} then {message.sequence}"
        )
        self.sequence = message.sequence
        if kind == "trade":
            assert message.trade.sequence == message.sequence
            self.trades.append(message.trade)
        elif kind == "delta":
            delta = message.delta
            side = self.bids if delta.side == common_pb2.SIDE_BUY else self.asks
            if delta.quantity == "0":
                assert delta.order_count == 0
                side.pop(delta.price, None)
            else:
                assert delta.order_count > 0
                side[delta.price] = (delta.quantity, delta.order_count)

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Best `depth` levels of each side, as (price, quantity, order_count)."""

        def best(levels: dict[str, tuple[str, int]], descending: bool) -> list[Level]:
            prices = sorted(levels, key=float, reverse=descending)[:depth]
            return [(p, levels[p][0], levels[p][1]) for p in prices]

        return best(self.bids, True), best(self.asks, False)


def levels_of(book: gateway_pb2.GetOrderBookResponse) -> tuple[list[Level], list[Level]]:
    """A GetOrderBook answer in the form of `LocalBook.top`."""
    return (
        [(lv.price, lv.quantity, lv.order_count) for lv in book.bids],
        [(lv.price, lv.quantity, lv.order_count) for lv in book.asks],
    )


def matcher_book(
    book: OrderBook, sequence: int, depth: int = 0
) -> matcher_pb2.MatcherGetOrderBookResponse:
    def pb(side: Side) -> list[matcher_pb2.BookLevel]:
        return [
            matcher_pb2.BookLevel(price=lv.price, quantity=lv.quantity, order_count=lv.order_count)
            for lv in book.depth(side, depth)
        ]

    return matcher_pb2.MatcherGetOrderBookResponse(
        symbol=SYMBOL, sequence=sequence, bids=pb(Side.BUY), asks=pb(Side.SELL)
    )


def truth(book: OrderBook, depth: int) -> tuple[list[Level], list[Level]]:
    """The matcher's book, formatted as the gateway formats GetOrderBook."""

    def side(s: Side) -> list[Level]:
        return [
            (MARKET.format_price(lv.price), MARKET.format_quantity(lv.quantity), lv.order_count)
            for lv in book.depth(s, depth)
        ]

    return side(Side.BUY), side(Side.SELL)


class Flow:
    """A seeded random flow of commands against one book."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.book = OrderBook(MARKET)
        self.offset = 0
        self.next_id = 0
        self.sequence = 0
        self.placed: list[tuple[int, int]] = []

    def command(self) -> OrderCommand:
        rng = self.rng
        self.next_id += 1
        order_id, account = self.next_id, rng.randint(1, 3)
        if self.placed and rng.random() < 0.25:
            target, owner = rng.choice(self.placed)
            return CancelOrder(SYMBOL, AccountId(owner), OrderId(target), ClientOrderId(""), 1)
        side = rng.choice([Side.BUY, Side.SELL])
        stp = rng.choice(list(SelfTradePrevention))
        quantity = rng.randint(1, 40) * LOT * 10
        if rng.random() < 0.1:
            budget = 300 * USDT if side is Side.BUY and rng.random() < 0.5 else 0
            return NewOrder(
                SYMBOL, OrderId(order_id), AccountId(account), ClientOrderId(f"c{order_id}"),
                side, OrderType.MARKET, TimeInForce.IOC, 0, 0 if budget else quantity, budget,
                False, stp, 1_000 + order_id,
            )  # fmt: skip
        offset = rng.randint(-12, 12) * TICK * 50
        price = 30_000 * USDT + offset
        tif = rng.choices([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK], weights=[8, 1, 1])[0]
        self.placed.append((order_id, account))
        return NewOrder(
            SYMBOL, OrderId(order_id), AccountId(account), ClientOrderId(f"c{order_id}"), side,
            OrderType.LIMIT, tif, price, quantity, 0, rng.random() < 0.05, stp, 1_000 + order_id,
        )  # fmt: skip

    def groups(self, count: int) -> Iterator[CommandGroup]:
        """`count` commands' groups, in log order (every command has at least one event)."""
        for _ in range(count):
            self.offset += 1
            events = self.book.apply(self.command(), self.offset)
            assert events
            self.sequence = events[-1].sequence
            yield CommandGroup(SYMBOL, tuple(events))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("depth", [1, 3, 1000])
def test_snapshot_and_deltas_are_the_book_after_every_command(seed: int, depth: int) -> None:
    flow = Flow(seed)
    live = LiveOrders(MARKETS)
    subscribed_at = flow.rng.randint(0, 150)
    for group in flow.groups(subscribed_at):
        live.apply(group)
    # The subscription buffers from here; the snapshot is taken a few commands later.
    buffered = [live.apply(group) for group in flow.groups(flow.rng.randint(0, 5))]
    view = BookView(MARKET, depth, matcher_book(flow.book, flow.sequence))
    client = LocalBook()
    client.apply(view.snapshot_message())
    assert client.top(depth) == truth(flow.book, depth)
    for changes in buffered:
        assert view.apply(changes) == []  # the snapshot holds them already
    trades = 0
    for group in flow.groups(250):
        changes = live.apply(group)
        for message in view.apply(changes):
            client.apply(message)
        assert client.sequence == flow.sequence
        assert client.top(depth) == truth(flow.book, depth), f"after sequence {flow.sequence}"
        trades += sum(step.trade is not None for step in changes.steps)
    assert len(client.trades) == trades


def test_a_group_that_skips_a_sequence_ends_the_stream_to_resync() -> None:
    flow = Flow(1)
    live = LiveOrders(MARKETS)
    view = BookView(MARKET, 5, matcher_book(flow.book, 0))
    groups = [live.apply(group) for group in flow.groups(3)]
    view.apply(groups[0])
    with pytest.raises(StreamEnded) as ended:
        view.apply(groups[2])
    assert ended.value.end.code is grpc.StatusCode.ABORTED


def test_a_snapshot_older_than_the_subscription_is_unavailable() -> None:
    flow = Flow(2)
    live = LiveOrders(MARKETS)
    old = matcher_book(flow.book, 0)
    groups = [live.apply(group) for group in flow.groups(3)]
    view = BookView(MARKET, 5, old)
    with pytest.raises(StreamEnded) as ended:
        view.apply(groups[2])
    assert ended.value.end.code is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("seed", range(8))
def test_orders_older_than_the_tail_are_placed(seed: int) -> None:
    """A tail that starts mid-log places the changes of orders it never saw accepted."""
    flow = Flow(100 + seed)
    for _ in flow.groups(60):
        pass  # before the gateway started
    live = LiveOrders(MARKETS)
    view = BookView(MARKET, 1000, matcher_book(flow.book, flow.sequence))
    client = LocalBook()
    client.apply(view.snapshot_message())
    for group in flow.groups(200):
        changes = live.apply(group)
        for message in view.apply(changes):
            client.apply(message)
        assert client.top(1000) == truth(flow.book, 1000)
