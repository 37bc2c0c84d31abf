"""The live streams: StreamOrderUpdates, StreamMarketData and OrderEntry, and how they end.

The first two are built on the engine tail the gateway already runs for RESULT answers
(`gateway.results`), through one fan-out (`gateway.stream_hub`): no stream opens a
consumer of its own. OrderEntry goes through the order desk like the unary calls
(`gateway.stream_entry`).

Every stream ends with a status the client can act on (`gateway.stream_hub.StreamEnd`):
UNAVAILABLE (resubscribe after a backoff), ABORTED (continuity broken: resubscribe and
resync at once), RESOURCE_EXHAUSTED (the client read too slowly: resubscribe, read faster).
StreamOrderUpdates sends events from the moment of subscription on; a client takes its
starting state from ListOpenOrders after subscribing, and does so again after any end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from gateway import arguments, stream_codec
from gateway.auth import Principal
from gateway.metrics import GatewayMetrics
from gateway.orders import OrderDesk
from gateway.results import EngineTail
from gateway.stream_entry import EntryWindow, OrderEntrySession
from gateway.stream_hub import EndLabel, StreamEnded, StreamHub
from gateway.stream_market import market_data
from gateway.upstream import UpstreamError, Upstreams, rich_status
from ordermesh.markets import MarketTable
from ordermesh.model import OrdermeshError
from ordermesh.v1 import gateway_pb2

__all__ = ["EndLabel", "LiveStreams", "StreamEnded", "StreamSettings", "end_label", "ended_status"]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The bounds of the live streams."""

    queue: int
    """Messages a StreamOrderUpdates or StreamMarketData subscriber may fall behind by."""
    window: int
    """Requests in flight on one OrderEntry stream."""


def end_label(error: BaseException) -> EndLabel:
    """The streams-ended label of a stream that ended with `error`."""
    if isinstance(error, StreamEnded):
        return error.end.label
    if isinstance(error, OrdermeshError):
        return EndLabel.REFUSED
    if isinstance(error, UpstreamError):
        return EndLabel.DEPENDENCY
    return EndLabel.INTERNAL


class LiveStreams:
    """The streaming RPCs, for an authenticated caller.

    Args:
        markets: the market table.
        tail: the engine tail (the hub is one of its listeners).
        hub: the fan-out of the tail.
        upstream: the internal services (the matcher's snapshot).
        desk: order entry, shared with the unary calls.
        metrics: streams open, messages, ends.
        settings: the bounds.
    """

    def __init__(  # noqa: PLR0917 - the streams' collaborators, all needed
        self,
        markets: MarketTable,
        tail: EngineTail,
        hub: StreamHub,
        upstream: Upstreams,
        desk: OrderDesk,
        metrics: GatewayMetrics,
        settings: StreamSettings,
    ) -> None:
        self._markets = markets
        self._tail = tail
        self._hub = hub
        self._upstream = upstream
        self._desk = desk
        self._settings = settings
        self.entry = EntryWindow()
        """Requests in flight on the OrderEntry streams."""
        metrics.order_entry_in_flight.set_function(lambda: self.entry.in_flight)

    async def order_updates(
        self, principal: Principal, request: gateway_pb2.StreamOrderUpdatesRequest
    ) -> AsyncIterator[gateway_pb2.StreamOrderUpdatesResponse]:
        """The caller's order updates from now on (of one market, if the request names one).

        Raises:
            OrdermeshError: no account behind the key, an unknown symbol, or the tail not
                reading yet (UNAVAILABLE).
            StreamEnded: the stream cannot go on.
        """
        account = principal.trading_account()
        market = arguments.optional_symbol(request.symbol, self._markets)
        self._tail.require_positioned()
        with self._hub.orders(account, market.symbol if market is not None else None) as updates:
            while True:
                update = await updates.get()
                yield stream_codec.order_update(update, self._markets)

    async def market_data(
        self, request: gateway_pb2.StreamMarketDataRequest
    ) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
        """One market: a snapshot of `depth` levels, then every change (gateway.stream_market).

        Raises:
            OrdermeshError: an unknown symbol, a depth out of range, or the tail not reading.
            UpstreamError: the matcher did not answer the snapshot.
            StreamEnded: the stream cannot go on.
        """
        market = self._markets.market(request.symbol)
        depth = arguments.bounded(request.depth, "depth", arguments.DEFAULT_DEPTH)
        self._tail.require_positioned()
        async for message in market_data(self._hub, self._upstream, market, depth):
            yield message

    def order_entry(
        self,
        principal: Principal,
        requests: AsyncIterator[gateway_pb2.OrderEntryRequest],
        limit: Callable[[], None],
    ) -> AsyncIterator[gateway_pb2.OrderEntryResponse]:
        """Answer the stream's requests (gateway.stream_entry)."""
        principal.trading_account()
        session = OrderEntrySession(self._desk, principal, limit, self._settings.window, self.entry)
        return session.run(requests)


def ended_status(error: StreamEnded) -> grpc.Status:
    """The rich status a stream that ended with `error` closes with."""
    end = error.end
    return rich_status(end.code, end.reason, end.message)
