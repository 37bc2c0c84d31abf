"""gRPC ordermesh.v1.Matcher: read-only views of the live books this instance owns.

A read runs on the event loop between two batches' awaits, and a batch applies its commands
without awaiting, so a read always sees a book between two commands. The view may be ahead
of what ordermesh.engine has committed (by the batch in flight); the log is deterministic,
so whoever commits that batch commits exactly these events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import grpc

from matcher.codec import order_to_pb
from matcher.core import LevelView, OrderBook
from ordermesh.grpcx import errors
from ordermesh.markets import Market
from ordermesh.model import OrderId, OrdermeshError, RejectReason, Side
from ordermesh.v1 import matcher_pb2, matcher_pb2_grpc

SERVICE_NAME = matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name
"""ordermesh.v1.Matcher."""

Context = grpc.aio.ServicerContext[Any, Any]


class BookSource(Protocol):
    """Where the servicer finds a symbol's live book."""

    def book(self, symbol: str) -> OrderBook:
        """The live book of `symbol`.

        Raises:
            OrdermeshError: UNKNOWN_SYMBOL, or UNAVAILABLE when this instance does not serve it.
        """


class MatcherServicer(matcher_pb2_grpc.MatcherServicer):
    """Answers GetOrderBook and GetOrder from the books `source` serves."""

    def __init__(self, source: BookSource) -> None:
        self._source = source

    async def GetOrderBook(
        self, request: matcher_pb2.MatcherGetOrderBookRequest, context: Context
    ) -> matcher_pb2.MatcherGetOrderBookResponse:
        """Aggregated depth of one symbol, best first, with the book's sequence number."""
        book = await self._book(request.symbol, context)
        depth = request.depth
        return matcher_pb2.MatcherGetOrderBookResponse(
            symbol=book.symbol,
            sequence=book.sequence,
            bids=_levels(book.depth(Side.BUY, depth)),
            asks=_levels(book.depth(Side.SELL, depth)),
        )

    async def GetOrder(
        self, request: matcher_pb2.MatcherGetOrderRequest, context: Context
    ) -> matcher_pb2.MatcherGetOrderResponse:
        """One resting order; NOT_FOUND (UNKNOWN_ORDER) when it is not on the book."""
        if request.order_id == 0:
            await errors.abort(
                context,
                OrdermeshError(
                    RejectReason.INVALID_ORDER_ID,
                    "order_id is required (a positive number), was 0",
                    field="order_id",
                ),
            )
        book = await self._book(request.symbol, context)
        order = book.order(OrderId(request.order_id))
        if order is None:
            await errors.abort(
                context,
                OrdermeshError(
                    RejectReason.UNKNOWN_ORDER,
                    f"order {request.order_id} is not on the {book.symbol} book: never placed"
                    " here, or already done (filled, canceled, expired or rejected)",
                    field="order_id",
                ),
            )
        return matcher_pb2.MatcherGetOrderResponse(order=order_to_pb(order))

    async def _book(self, symbol: str, context: Context) -> OrderBook:
        if not symbol:
            await errors.abort(
                context,
                OrdermeshError(
                    RejectReason.UNKNOWN_SYMBOL, "symbol is required, e.g. BTC-USDT", field="symbol"
                ),
            )
        try:
            return self._source.book(symbol)
        except OrdermeshError as e:
            await errors.abort(context, e)


class BookDirectory:
    """Which books this instance answers reads from, and why not the others."""

    def __init__(self, markets: Mapping[str, Market], orders_topic: str) -> None:
        self._markets = markets
        self._topic = orders_topic
        self._partition_of: dict[str, int] = {}
        self._live: dict[str, OrderBook] = {}
        self._recovering: dict[str, int] = {}  # symbol -> the offset its partition is live at

    def place(self, partition_of: Mapping[str, int]) -> None:
        """Record which partition each symbol lives in."""
        self._partition_of = dict(partition_of)

    def recovering(self, symbols: Iterable[str], live_from: int) -> None:
        """Mark symbols as being replayed up to `live_from`."""
        self._recovering.update(dict.fromkeys(symbols, live_from))

    def serve(self, books: Mapping[str, OrderBook]) -> None:
        """Answer reads from these books."""
        for symbol in books:
            self._recovering.pop(symbol, None)
        self._live.update(books)

    def withdraw(self, symbols: Iterable[str]) -> None:
        """Stop answering reads for these symbols."""
        for symbol in symbols:
            self._live.pop(symbol, None)
            self._recovering.pop(symbol, None)

    def book(self, symbol: str) -> OrderBook:
        """The live book of `symbol`.

        Raises:
            OrdermeshError: UNKNOWN_SYMBOL for a symbol outside the markets table;
                UNAVAILABLE when another instance owns it or it is being recovered.
        """
        book = self._live.get(symbol)
        if book is not None:
            return book
        if symbol not in self._markets:
            known = ", ".join(self._markets)
            raise OrdermeshError(
                RejectReason.UNKNOWN_SYMBOL,
                f"symbol {symbol!r} is not traded here; the markets are {known}",
                field="symbol",
            )
        partition = self._partition_of.get(symbol)
        where = self._topic if partition is None else f"{self._topic} partition {partition}"
        if symbol in self._recovering:
            raise OrdermeshError(
                RejectReason.UNAVAILABLE,
                f"symbol {symbol} is recovering on this matcher instance (replaying {where} up to"
                f" offset {self._recovering[symbol]}); retry shortly",
            )
        raise OrdermeshError(
            RejectReason.UNAVAILABLE,
            f"this matcher instance does not own symbol {symbol}: another instance owns {where},"
            " or it is being recovered; ask that instance or retry shortly",
        )


def _levels(levels: list[LevelView]) -> list[matcher_pb2.BookLevel]:
    return [
        matcher_pb2.BookLevel(
            price=level.price, quantity=level.quantity, order_count=level.order_count
        )
        for level in levels
    ]
