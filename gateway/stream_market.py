"""StreamMarketData: a depth snapshot, then every book change and trade of one market.

The stream subscribes to its market's changes first, then takes a snapshot of the whole
book from the matcher (every level, `depth` 0), so nothing falls between the two: changes
at or below the snapshot's sequence are already in it and are dropped, and the first one
applied must follow it directly. The client gets the snapshot cut to the depth it asked
for; after that the stream keeps the whole book itself and sends:

- for every engine event of the market, in order, at least one message carrying that
  event's sequence: a PublicTrade for a trade, a BookDelta (the new total of a level; "0"
  and order_count 0 when it is gone) for each level the event changed, or, when the event
  changed nothing visible (an order accepted that is about to trade, a refused order or
  cancel), a message with no data. So sequences go up by one, each repeated for the
  messages of one event, and any other step is a gap: resubscribe.
- when levels leave the top `depth` of a side, the levels that move up into it (their
  current totals), with the sequence of the command's last event.

A client that applies the snapshot and then every delta, keeping every level it is told
of, holds after the last message of sequence N exactly the book GetOrderBook answers at
sequence N, within `depth` (GetOrderBook's sequence is always a command's last event).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from typing import Final

import grpc

from gateway import codec, stream_codec
from gateway.stream_hub import EndLabel, StreamEnd, StreamEnded, StreamHub
from gateway.stream_state import GroupChanges, LevelChange, MarketStep
from gateway.upstream import Upstreams
from ordermesh.markets import Market
from ordermesh.model import RejectReason, Side
from ordermesh.v1 import gateway_pb2, matcher_pb2

_ALL_LEVELS: Final = 0


def resync(message: str) -> StreamEnded:
    """The end of a stream whose copy of the book can no longer be kept exact."""
    return StreamEnded(
        StreamEnd(
            grpc.StatusCode.ABORTED,
            RejectReason.UNAVAILABLE,
            f"{message}; resubscribe for a new snapshot",
            EndLabel.RESYNC,
        )
    )


class BookView:
    """One stream's copy of a whole book, and what its client has been told of it.

    Args:
        market: the market.
        depth: levels per side the client follows.
        book: the matcher's snapshot of every level.
    """

    def __init__(
        self, market: Market, depth: int, book: matcher_pb2.MatcherGetOrderBookResponse
    ) -> None:
        self._market = market
        self._depth = depth
        self._snapshot = book
        self.sequence = book.sequence
        """The sequence of the last event applied."""
        self._started = False
        self._levels: dict[Side, dict[int, list[int]]] = {
            Side.BUY: {level.price: [level.quantity, level.order_count] for level in book.bids},
            Side.SELL: {level.price: [level.quantity, level.order_count] for level in book.asks},
        }
        self._told: dict[Side, set[int]] = {
            Side.BUY: {level.price for level in book.bids[:depth]},
            Side.SELL: {level.price for level in book.asks[:depth]},
        }

    def snapshot_message(self) -> gateway_pb2.StreamMarketDataResponse:
        """The first message: the snapshot, cut to the client's depth."""
        book = self._snapshot
        cut = matcher_pb2.MatcherGetOrderBookResponse(
            symbol=book.symbol,
            sequence=book.sequence,
            bids=book.bids[: self._depth],
            asks=book.asks[: self._depth],
        )
        return gateway_pb2.StreamMarketDataResponse(
            symbol=self._market.symbol,
            sequence=book.sequence,
            snapshot=codec.book_to_pb(cut, self._market),
        )

    def apply(self, changes: GroupChanges) -> list[gateway_pb2.StreamMarketDataResponse]:
        """The messages of one command group (none when the snapshot already holds it).

        Raises:
            StreamEnded: the group does not follow the book's sequence, or the book cannot
                be kept exact (ABORTED), or the snapshot is older than the subscription
                (UNAVAILABLE).
        """
        if changes.last_sequence <= self.sequence:
            return []
        if changes.first_sequence != self.sequence + 1:
            self._gap(changes.first_sequence)
        self._started = True
        messages: list[gateway_pb2.StreamMarketDataResponse] = []
        emptied: set[Side] = set()
        for step in changes.steps:
            messages.extend(self._step(step, emptied))
        for side in sorted(emptied):
            messages.extend(self._moved_up(side, changes.last_sequence))
        self.sequence = changes.last_sequence
        return messages

    def _gap(self, first: int) -> None:
        if self._started:
            raise resync(
                f"{self._market.symbol}: the log went from sequence {self.sequence} to {first}"
            )
        raise StreamEnded(
            StreamEnd(
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.UNAVAILABLE,
                f"{self._market.symbol}: the matcher's book (sequence {self.sequence}) is"
                f" behind the log (sequence {first}); resubscribe shortly",
                EndLabel.DEPENDENCY,
            )
        )

    def _message(self, sequence: int) -> gateway_pb2.StreamMarketDataResponse:
        return gateway_pb2.StreamMarketDataResponse(symbol=self._market.symbol, sequence=sequence)

    def _step(
        self, step: MarketStep, emptied: set[Side]
    ) -> list[gateway_pb2.StreamMarketDataResponse]:
        messages = []
        if step.trade is not None:
            message = self._message(step.sequence)
            message.trade.CopyFrom(
                stream_codec.public_trade(
                    step.trade, self._market, step.sequence, step.timestamp_ns
                )
            )
            messages.append(message)
        for change in step.changes:
            delta = self._change(change, emptied)
            if delta is not None:
                message = self._message(step.sequence)
                message.delta.CopyFrom(delta)
                messages.append(message)
        return messages or [self._message(step.sequence)]

    def _change(self, change: LevelChange, emptied: set[Side]) -> gateway_pb2.BookDelta | None:
        levels = self._levels[change.side]
        level = levels.setdefault(change.price, [0, 0])
        level[0] += change.quantity
        level[1] += change.order_count
        quantity, count = level
        if quantity < 0 or count < 0 or (count == 0 and quantity != 0):
            raise resync(
                f"{self._market.symbol}: level {change.price} of {change.side.name} would hold"
                f" {quantity} in {count} orders"
            )
        if quantity == 0 and count:
            return None  # a maker filled to nothing: its OrderDone follows in this command
        told = self._told[change.side]
        if count == 0:
            del levels[change.price]
            emptied.add(change.side)
            if change.price not in told:
                return None
            told.discard(change.price)
        else:
            told.add(change.price)
        return stream_codec.book_delta(self._market, change.side, change.price, quantity, count)

    def _moved_up(self, side: Side, sequence: int) -> list[gateway_pb2.StreamMarketDataResponse]:
        levels = self._levels[side]
        best = heapq.nlargest if side is Side.BUY else heapq.nsmallest
        told = self._told[side]
        messages = []
        for price in best(self._depth, levels):
            if price in told:
                continue
            told.add(price)
            quantity, count = levels[price]
            message = self._message(sequence)
            message.delta.CopyFrom(
                stream_codec.book_delta(self._market, side, price, quantity, count)
            )
            messages.append(message)
        return messages


async def market_data(
    hub: StreamHub, upstream: Upstreams, market: Market, depth: int
) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
    """The stream of one market: its snapshot, then its changes (see the module doc).

    Raises:
        StreamEnded: the stream cannot go on (the status says why and what to do).
        UpstreamError: the matcher did not answer the snapshot.
    """
    with hub.market(market.symbol) as subscription:
        matcher = upstream.matcher
        book = await upstream.call(
            "matcher",
            matcher.GetOrderBook,
            matcher_pb2.MatcherGetOrderBookRequest(symbol=market.symbol, depth=_ALL_LEVELS),
        )
        view = BookView(market, depth, book)
        yield view.snapshot_message()
        while True:
            changes = await subscription.get()
            for message in view.apply(changes):
                yield message
