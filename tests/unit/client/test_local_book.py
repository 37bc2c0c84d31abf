"""LocalBook: snapshot + deltas give the book a naive model holds, at every depth."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh.client import BookDelta, BookSnapshot, LocalBook, OrderBook, PriceLevel, TradeEvent
from ordermesh.client.types import PublicTrade, Side

SYMBOL = "ETH-BTC"
prices = st.integers(1, 40).map(lambda n: Decimal(n) / 4)
levels = st.tuples(st.integers(0, 5), st.integers(0, 3))  # quantity, order count (0: gone)
changes = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), prices, levels), max_size=60)
books = st.dictionaries(
    st.tuples(st.sampled_from(["BUY", "SELL"]), prices),
    st.tuples(st.integers(1, 5), st.integers(1, 3)),
    max_size=20,
)


def order_book(model: dict[tuple[str, Decimal], tuple[int, int]], sequence: int) -> OrderBook:
    def side(name: str) -> tuple[PriceLevel, ...]:
        found = [(p, q, c) for (s, p), (q, c) in model.items() if s == name]
        found.sort(reverse=name == "BUY")
        return tuple(PriceLevel(p, Decimal(q), c) for p, q, c in found)

    return OrderBook(SYMBOL, sequence, side("BUY"), side("SELL"))


@given(start=books, steps=changes, depth=st.integers(1, 30))
def test_snapshot_then_deltas_is_the_model_at_every_depth(
    start: dict[tuple[str, Decimal], tuple[int, int]],
    steps: list[tuple[Side, Decimal, tuple[int, int]]],
    depth: int,
) -> None:
    book = LocalBook(SYMBOL)
    book.apply(BookSnapshot(SYMBOL, 10, order_book(start, 10)))
    model = dict(start)
    for number, (side, price, (quantity, count)) in enumerate(steps, start=11):
        gone = quantity == 0 or count == 0
        book.apply(BookDelta(SYMBOL, number, side, price, Decimal(0 if gone else quantity), count))
        if gone:
            model.pop((side, price), None)
        else:
            model[(side, price)] = (quantity, count)
    expected = order_book(model, 10 + len(steps))
    assert book.snapshot(depth) == OrderBook(
        SYMBOL, expected.sequence, expected.bids[:depth], expected.asks[:depth]
    )
    assert book.best_bid() == (expected.bids[0] if expected.bids else None)
    assert book.best_ask() == (expected.asks[0] if expected.asks else None)


@given(first=books, second=books)
def test_a_new_snapshot_replaces_everything(
    first: dict[tuple[str, Decimal], tuple[int, int]],
    second: dict[tuple[str, Decimal], tuple[int, int]],
) -> None:
    book = LocalBook(SYMBOL)
    book.apply(BookSnapshot(SYMBOL, 5, order_book(first, 5)))
    book.apply(BookSnapshot(SYMBOL, 3, order_book(second, 3)))  # a resync may go back
    assert book.snapshot(1000) == order_book(second, 3)


def test_old_events_are_ignored_and_trades_only_move_the_sequence() -> None:
    book = LocalBook(SYMBOL)
    assert not book.synced
    level = PriceLevel(Decimal("0.05"), Decimal(2), 1)
    book.apply(BookSnapshot(SYMBOL, 7, OrderBook(SYMBOL, 7, (level,), ())))
    book.apply(BookDelta(SYMBOL, 6, "BUY", Decimal("0.05"), Decimal(0), 0))  # before the snapshot
    assert book.bids == (level,)
    trade = PublicTrade(SYMBOL, 1, Decimal("0.05"), Decimal(1), Decimal("0.05"), "SELL", None, 8)  # type: ignore[arg-type]
    book.apply(TradeEvent(SYMBOL, 8, trade))
    assert (book.sequence, book.bids) == (8, (level,))


def test_misuse_is_refused() -> None:
    book = LocalBook(SYMBOL)
    with pytest.raises(ValueError, match="needs a snapshot"):
        book.apply(BookDelta(SYMBOL, 1, "BUY", Decimal(1), Decimal(1), 1))
    with pytest.raises(ValueError, match="an event of BTC-USDT"):
        book.apply(BookSnapshot("BTC-USDT", 1, OrderBook("BTC-USDT", 1, (), ())))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        book.snapshot(0)
