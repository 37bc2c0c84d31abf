"""The book's storage: resting orders, FIFO price levels, and one side's sorted prices.

Prices are stored as *keys* that grow towards the best price: the bid key is the price, the
ask key is minus the price. Each side keeps its keys in an ascending list, so the best level
is always ``keys[-1]`` (O(1)), the level that empties first in matching is popped from the
end (O(1)), and a new level goes in by bisection. Books live near the touch, so the lists
stay short and the rare insert or removal away from the end is a small memmove.

A level is a deque in time priority. A cancel is O(1): it marks the order dead (remaining
0) and lowers the level's live count instead of searching the deque; matching drops dead
orders when they reach the front, and a level whose dead entries outgrow its live ones is
compacted.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from typing import Final

from matcher.core.snapshot import LevelView, OrderSnapshot
from ordermesh.events import NewOrder
from ordermesh.model import Side

_COMPACT_SLACK: Final = 16  # dead entries a level may carry beyond its live count

NO_LIMIT: Final = -(2**64)
"""A key below every key: the limit of a MARKET order, which takes any price."""
UNBOUNDED: Final = 2**62
"""The quantity of a MARKET BUY by budget alone: more than any book holds."""


class RestingOrder:
    """An order on the book: its NewOrder and what is left of it (the book's own record)."""

    __slots__ = ("filled_quote", "order", "remaining")

    def __init__(self, order: NewOrder, remaining: int, filled_quote: int) -> None:
        self.order = order
        """The command that placed it (a LIMIT GTC order): ids, side, price, quantity."""
        self.remaining = remaining
        """Base atoms still open; 0 once the order is off the book (dead in its deque)."""
        self.filled_quote = filled_quote
        """Quote atoms of its fills so far."""


class PriceLevel:
    """The orders resting at one price, oldest first."""

    __slots__ = ("count", "orders", "price")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[RestingOrder] = deque()
        """Time priority; may hold dead orders (remaining 0) that matching skips."""
        self.count = 0
        """Live orders in `orders`."""

    def live(self) -> Iterator[RestingOrder]:
        """The live orders, in time priority."""
        for order in self.orders:
            if order.remaining:
                yield order

    def compact(self) -> None:
        """Drop the dead orders (when they outnumber the live ones by a margin)."""
        self.orders = deque(self.live())


class BookSide:
    """One side of a book: price levels by key, and the keys in ascending order."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, side: Side) -> None:
        self.sign = 1 if side == Side.BUY else -1
        """Key = sign x price: +1 for bids, -1 for asks."""
        self.levels: dict[int, PriceLevel] = {}
        self.keys: list[int] = []
        """Ascending; the best price's key is last."""

    def best_price(self) -> int | None:
        """The best price on this side, or None when it is empty."""
        keys = self.keys
        return self.sign * keys[-1] if keys else None

    def open_level(self, key: int, price: int) -> PriceLevel:
        """Create the (empty) level of `price` at `key` and return it."""
        level = PriceLevel(price)
        self.levels[key] = level
        insort(self.keys, key)
        return level

    def take_out(self, resting: RestingOrder) -> None:
        """Mark a live order dead where it stands and drop its level if that empties it."""
        key = self.sign * resting.order.price
        level = self.levels[key]
        resting.remaining = 0
        level.count -= 1
        if level.count == 0:
            self.drop_level(key)
        elif len(level.orders) > 2 * level.count + _COMPACT_SLACK:
            level.compact()

    def drop_level(self, key: int) -> None:
        """Remove the (empty) level at `key`."""
        del self.levels[key]
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def levels_best_first(self) -> Iterator[PriceLevel]:
        """The levels from the best price outwards."""
        levels = self.levels
        for key in reversed(self.keys):
            yield levels[key]

    def orders_in_priority(self) -> Iterator[RestingOrder]:
        """The live orders in price-time priority."""
        for level in self.levels_best_first():
            yield from level.live()

    def views(self) -> list[OrderSnapshot]:
        """The live orders as values, in price-time priority."""
        return [view(resting) for resting in self.orders_in_priority()]

    def depth(self, levels: int = 0) -> list[LevelView]:
        """Aggregated levels, best first; all of them when `levels` is 0."""
        views: list[LevelView] = []
        for level in self.levels_best_first():
            if levels and len(views) == levels:
                break
            live = list(level.live())
            views.append(LevelView(level.price, sum(o.remaining for o in live), len(live)))
        return views


def view(resting: RestingOrder) -> OrderSnapshot:
    """A resting order as an immutable value."""
    order = resting.order
    return OrderSnapshot(
        order_id=order.order_id,
        account_id=order.account_id,
        client_order_id=order.client_order_id,
        side=order.side,
        price=order.price,
        quantity=order.quantity,
        remaining_quantity=resting.remaining,
        filled_quote_quantity=resting.filled_quote,
        self_trade_prevention=order.self_trade_prevention,
        timestamp_ns=order.timestamp_ns,
    )
