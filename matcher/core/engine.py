"""The books of every symbol one matcher owns, behind one `apply`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from matcher.core.book import OrderBook
from matcher.core.snapshot import BookSnapshot
from ordermesh.events import EngineEvent, OrderCommand
from ordermesh.markets import Market
from ordermesh.model import Symbol


class UnknownSymbolError(LookupError):
    """A command for a symbol this engine has no book for: misrouting or a config mismatch."""


class MatchingEngine:
    """One `OrderBook` per market, each with its own sequence and hash chain."""

    __slots__ = ("_books",)

    def __init__(self, markets: Iterable[Market]) -> None:
        self._books: dict[str, OrderBook] = {}
        for market in markets:
            if market.symbol in self._books:
                raise ValueError(f"market {market.symbol} given twice")
            self._books[market.symbol] = OrderBook(market)

    @classmethod
    def restore(
        cls, markets: Iterable[Market], snapshots: Iterable[BookSnapshot]
    ) -> MatchingEngine:
        """An engine whose books continue from `snapshots`; a market without one starts empty.

        Raises:
            UnknownSymbolError: a snapshot of a symbol that is not among `markets`.
            SnapshotError: a snapshot that is not a consistent book of its market.
        """
        engine = cls(markets)
        for snapshot in snapshots:
            book = engine._books.get(snapshot.symbol)
            if book is None:
                raise UnknownSymbolError(f"snapshot of {snapshot.symbol!r}, not a market here")
            engine._books[snapshot.symbol] = OrderBook.restore(book.market, snapshot)
        return engine

    @property
    def books(self) -> Mapping[str, OrderBook]:
        """The books by symbol, in the order the markets were given."""
        return self._books

    def book(self, symbol: Symbol) -> OrderBook:
        """The book of `symbol`.

        Raises:
            UnknownSymbolError: no such book here.
        """
        book = self._books.get(symbol)
        if book is None:
            known = ", ".join(self._books)
            raise UnknownSymbolError(f"no book for {symbol!r}; books here: {known}")
        return book

    def apply(self, command: OrderCommand, offset: int) -> list[EngineEvent]:
        """Apply `command` (read at `offset`) to its symbol's book; see `OrderBook.apply`.

        Raises:
            UnknownSymbolError: no book for the command's symbol.
        """
        try:
            book = self._books[command.symbol]
        except KeyError:
            raise UnknownSymbolError(f"no book for {command.symbol!r}") from None
        return book.apply(command, offset)

    def snapshot(self) -> tuple[BookSnapshot, ...]:
        """Every book's snapshot, in market order."""
        return tuple(book.snapshot() for book in self._books.values())
