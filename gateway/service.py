"""gRPC ordermesh.v1.Gateway: authenticate, rate-limit, then validate, route and encode.

Every call needs an API key (`gateway.auth`); every refusal is a gRPC status with a
google.rpc.ErrorInfo: the gateway's own from one table (`ordermesh.grpcx.errors`), an
upstream's passed on unchanged (`gateway.upstream`). The streaming RPCs (`gateway.streams`)
authenticate and take a rate limit token when they open (OrderEntry: also one per
request), and end with a status that says what the client should do (UNAVAILABLE,
ABORTED, RESOURCE_EXHAUSTED; see `gateway.stream_hub.StreamEnd`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, NoReturn, TypeVar

import grpc

from gateway.auth import ApiKeys, Principal
from gateway.metrics import GatewayMetrics
from gateway.orders import Deadline, OrderDesk
from gateway.ratelimit import RateLimiter
from gateway.reads import Reads
from gateway.streams import EndLabel, LiveStreams, StreamEnded, end_label, ended_status
from gateway.upstream import UpstreamError
from ordermesh.grpcx import errors
from ordermesh.model import OrdermeshError
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc

SERVICE_NAME: Final = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
"""ordermesh.v1.Gateway."""

_T = TypeVar("_T")
_M = TypeVar("_M")
Context = grpc.aio.ServicerContext[Any, Any]
Work = Callable[[Principal, Deadline], Awaitable[_T]]
StreamWork = Callable[[Principal], AsyncIterator[_M]]


def caller_bucket(principal: Principal) -> str:
    """The rate limiter's bucket: one per account (every key of it shares it), else per key."""
    if principal.account_id is not None:
        return f"account {principal.account_id}"
    return f"key {principal.name}"


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """The public API.

    Args:
        keys: the API key table.
        limiter: the per-caller rate limit.
        desk: order entry and funding.
        reads: the queries.
        metrics: calls by method and status, latency per method, streams.
        streams: the streaming RPCs.
    """

    def __init__(  # noqa: PLR0917 - the servicer's collaborators, all needed
        self,
        keys: ApiKeys,
        limiter: RateLimiter,
        desk: OrderDesk,
        reads: Reads,
        metrics: GatewayMetrics,
        streams: LiveStreams,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._desk = desk
        self._reads = reads
        self._metrics = metrics
        self._streams = streams

    async def _serve(self, method: str, context: Context, work: Work[_T]) -> _T:
        """Authenticate, rate-limit, run `work`; turn every refusal into a rich status."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            principal = self._keys.authenticate(context.invocation_metadata() or ())
            self._limiter.acquire(caller_bucket(principal))
            return await work(principal, Deadline(context.time_remaining()))
        except OrdermeshError as e:
            code = errors.status_code(e.reason)
            await errors.abort(context, e)
        except UpstreamError as e:
            code = e.status.code
            await _abort_with(context, e.status)
        finally:
            self._metrics.calls.labels(method, code.name).inc()
            self._metrics.latency.labels(method).observe(time.perf_counter() - started)

    async def PlaceOrder(
        self, request: gateway_pb2.PlaceOrderRequest, context: Context
    ) -> gateway_pb2.PlaceOrderResponse:
        """Place an order for the key's account (ubscore Reserve)."""
        return await self._serve(
            "PlaceOrder", context, lambda who, deadline: self._desk.place(who, request, deadline)
        )

    async def CancelOrder(
        self, request: gateway_pb2.CancelOrderRequest, context: Context
    ) -> gateway_pb2.CancelOrderResponse:
        """Cancel one of the account's orders (ubscore Cancel)."""
        return await self._serve(
            "CancelOrder", context, lambda who, deadline: self._desk.cancel(who, request, deadline)
        )

    async def GetOrder(
        self, request: gateway_pb2.GetOrderRequest, context: Context
    ) -> gateway_pb2.GetOrderResponse:
        """One of the account's orders (settlement)."""
        return await self._serve(
            "GetOrder",
            context,
            lambda who, deadline: self._reads.get_order(who.trading_account(), request, deadline),
        )

    async def ListOpenOrders(
        self, request: gateway_pb2.ListOpenOrdersRequest, context: Context
    ) -> gateway_pb2.ListOpenOrdersResponse:
        """The account's live orders (settlement)."""
        return await self._serve(
            "ListOpenOrders",
            context,
            lambda who, deadline: self._reads.list_open_orders(
                who.trading_account(), request, deadline
            ),
        )

    async def ListOrders(
        self, request: gateway_pb2.ListOrdersRequest, context: Context
    ) -> gateway_pb2.ListOrdersResponse:
        """The account's orders, paged (settlement)."""
        return await self._serve(
            "ListOrders",
            context,
            lambda who, deadline: self._reads.list_orders(who.trading_account(), request, deadline),
        )

    async def ListMyTrades(
        self, request: gateway_pb2.ListMyTradesRequest, context: Context
    ) -> gateway_pb2.ListMyTradesResponse:
        """The account's fills, paged (settlement)."""
        return await self._serve(
            "ListMyTrades",
            context,
            lambda who, deadline: self._reads.list_my_trades(
                who.trading_account(), request, deadline
            ),
        )

    async def GetBalances(
        self,
        request: gateway_pb2.GetBalancesRequest,  # noqa: ARG002 - it has no fields
        context: Context,
    ) -> gateway_pb2.GetBalancesResponse:
        """The account's balances (ubscore)."""
        return await self._serve(
            "GetBalances",
            context,
            lambda who, deadline: self._reads.get_balances(who.trading_account(), deadline),
        )

    async def ListSymbols(
        self,
        request: gateway_pb2.ListSymbolsRequest,  # noqa: ARG002 - it has no fields
        context: Context,
    ) -> gateway_pb2.ListSymbolsResponse:
        """The markets and their rules (the market table)."""

        async def work(_who: Principal, _deadline: Deadline) -> gateway_pb2.ListSymbolsResponse:
            return self._reads.list_symbols()

        return await self._serve("ListSymbols", context, work)

    async def GetOrderBook(
        self, request: gateway_pb2.GetOrderBookRequest, context: Context
    ) -> gateway_pb2.GetOrderBookResponse:
        """Aggregated depth of one market (matcher)."""
        return await self._serve(
            "GetOrderBook",
            context,
            lambda _who, deadline: self._reads.get_order_book(request, deadline),
        )

    async def GetTicker(
        self, request: gateway_pb2.GetTickerRequest, context: Context
    ) -> gateway_pb2.GetTickerResponse:
        """24-hour statistics of one market (settlement)."""
        return await self._serve(
            "GetTicker", context, lambda _who, deadline: self._reads.get_ticker(request, deadline)
        )

    async def ListTrades(
        self, request: gateway_pb2.ListTradesRequest, context: Context
    ) -> gateway_pb2.ListTradesResponse:
        """Recent public trades of one market (settlement)."""
        return await self._serve(
            "ListTrades",
            context,
            lambda _who, deadline: self._reads.list_trades(request, deadline),
        )

    async def GetCandles(
        self, request: gateway_pb2.GetCandlesRequest, context: Context
    ) -> gateway_pb2.GetCandlesResponse:
        """OHLCV candles of one market (settlement)."""
        return await self._serve(
            "GetCandles",
            context,
            lambda _who, deadline: self._reads.get_candles(request, deadline),
        )

    async def Deposit(
        self, request: gateway_pb2.DepositRequest, context: Context
    ) -> gateway_pb2.DepositResponse:
        """Credit an account (admin keys; ubscore)."""
        return await self._serve(
            "Deposit", context, lambda who, deadline: self._desk.deposit(who, request, deadline)
        )

    async def Withdraw(
        self, request: gateway_pb2.WithdrawRequest, context: Context
    ) -> gateway_pb2.WithdrawResponse:
        """Debit an account (admin keys; ubscore)."""
        return await self._serve(
            "Withdraw", context, lambda who, deadline: self._desk.withdraw(who, request, deadline)
        )

    async def _stream(
        self, method: str, context: Context, work: StreamWork[_M]
    ) -> AsyncIterator[_M]:
        """Authenticate, rate-limit, relay `work`'s messages; end with a status that says why."""
        label = EndLabel.CLIENT_GONE
        opened = self._metrics.streams_open.labels(method)
        sent = self._metrics.stream_messages.labels(method)
        opened.inc()
        try:
            principal = self._keys.authenticate(context.invocation_metadata() or ())
            self._limiter.acquire(caller_bucket(principal))
            async for message in work(principal):
                yield message
                sent.inc()
            label = EndLabel.COMPLETED
        except asyncio.CancelledError:
            raise
        except (OrdermeshError, UpstreamError, StreamEnded) as e:
            label = end_label(e)
            await _end_stream(context, e)
        except Exception:
            label = EndLabel.INTERNAL
            raise
        finally:
            opened.dec()
            self._metrics.streams_ended.labels(method, label.value).inc()

    async def StreamOrderUpdates(
        self, request: gateway_pb2.StreamOrderUpdatesRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.StreamOrderUpdatesResponse]:
        """The account's order updates from now on (accepted, fills, done), in log order.

        Only the caller's own orders, each update with the market sequence of its event;
        one market's when `symbol` is set. Events from the subscription on: a client
        subscribes, then takes its starting state from ListOpenOrders (and again after the
        stream ends, whatever the status).
        """
        async for message in self._stream(
            "StreamOrderUpdates", context, lambda who: self._streams.order_updates(who, request)
        ):
            yield message

    async def StreamMarketData(
        self, request: gateway_pb2.StreamMarketDataRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
        """A depth snapshot of one market, then its book deltas and trades (gateway.stream_market).

        Every engine event of the market gives at least one message with its sequence, so
        sequences rise by one (repeated for the messages of one event); anything else is a
        gap, and the client resubscribes for a new snapshot.
        """
        async for message in self._stream(
            "StreamMarketData", context, lambda _who: self._streams.market_data(request)
        ):
            yield message

    async def OrderEntry(
        self,
        request_iterator: AsyncIterator[gateway_pb2.OrderEntryRequest],
        context: Context,
    ) -> AsyncIterator[gateway_pb2.OrderEntryResponse]:
        """Many places and cancels on one stream, each answered by its client_order_id.

        Authenticated once from the stream's metadata; each request takes a rate limit
        token; a refused request is answered with an OrderEntryError (the code, reason and
        message the unary call would have ended with) and the stream goes on. At most the
        `order_entry_window` setting of requests is in flight (gateway.stream_entry).
        """

        def work(who: Principal) -> AsyncIterator[gateway_pb2.OrderEntryResponse]:
            bucket = caller_bucket(who)
            return self._streams.order_entry(
                who, request_iterator, lambda: self._limiter.acquire(bucket)
            )

        async for message in self._stream("OrderEntry", context, work):
            yield message


async def _end_stream(
    context: Context, error: OrdermeshError | UpstreamError | StreamEnded
) -> None:
    if isinstance(error, OrdermeshError):
        await errors.abort(context, error)
    status = error.status if isinstance(error, UpstreamError) else ended_status(error)
    await _abort_with(context, status)


async def _abort_with(context: Context, status: grpc.Status) -> NoReturn:
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover
