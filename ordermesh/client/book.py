"""LocalBook: a client-side copy of one market's depth, kept up to date from market data."""

from __future__ import annotations

from decimal import Decimal

from ordermesh.client.types import (
    BookDelta,
    BookSnapshot,
    MarketEvent,
    OrderBook,
    PriceLevel,
)


class LocalBook:
    """The depth of one market, rebuilt from `AsyncClient.market_data` events.

    A BookSnapshot replaces everything; a BookDelta sets one level (quantity 0 removes it);
    a TradeEvent or BookUnchanged only advances the sequence (the deltas that come with a
    trade move the book).
    Events older than the book's sequence are ignored, so a snapshot taken after a
    resubscribe and events that crossed it apply in any overlap. Beyond the first
    snapshot's depth the book holds only the levels that deltas have touched, so
    `snapshot(depth)` is exact up to the depth the stream was opened with.

    Args:
        symbol: the market; events of another market are refused.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.sequence = 0
        """The sequence of the last event applied (0 before the first snapshot)."""
        self._bids: dict[Decimal, PriceLevel] = {}
        self._asks: dict[Decimal, PriceLevel] = {}
        self._synced = False

    @property
    def synced(self) -> bool:
        """True once a snapshot has been applied."""
        return self._synced

    def apply(self, event: MarketEvent) -> None:
        """Apply one market-data event.

        Raises:
            ValueError: an event of another market, or a delta before any snapshot.
        """
        if event.symbol != self.symbol:
            raise ValueError(f"an event of {event.symbol} cannot apply to the {self.symbol} book")
        if isinstance(event, BookSnapshot):
            self._replace(event)
            return
        if not self._synced:
            raise ValueError("a LocalBook needs a snapshot before deltas and trades")
        if event.sequence < self.sequence:
            return
        if isinstance(event, BookDelta):
            self._set(event)
        self.sequence = event.sequence

    def _replace(self, snapshot: BookSnapshot) -> None:
        self._bids = {level.price: level for level in snapshot.book.bids}
        self._asks = {level.price: level for level in snapshot.book.asks}
        self.sequence = snapshot.sequence
        self._synced = True

    def _set(self, delta: BookDelta) -> None:
        side = self._bids if delta.side == "BUY" else self._asks
        if delta.quantity == 0:
            side.pop(delta.price, None)
        else:
            side[delta.price] = PriceLevel(delta.price, delta.quantity, delta.order_count)

    @property
    def bids(self) -> tuple[PriceLevel, ...]:
        """Bid levels, highest price first."""
        return tuple(self._bids[p] for p in sorted(self._bids, reverse=True))

    @property
    def asks(self) -> tuple[PriceLevel, ...]:
        """Ask levels, lowest price first."""
        return tuple(self._asks[p] for p in sorted(self._asks))

    def best_bid(self) -> PriceLevel | None:
        """The highest bid, if any."""
        return self._bids[max(self._bids)] if self._bids else None

    def best_ask(self) -> PriceLevel | None:
        """The lowest ask, if any."""
        return self._asks[min(self._asks)] if self._asks else None

    def snapshot(self, depth: int = 20) -> OrderBook:
        """The book as an OrderBook, `depth` levels per side, comparable with GetOrderBook."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, was {depth}")
        return OrderBook(self.symbol, self.sequence, self.bids[:depth], self.asks[:depth])
