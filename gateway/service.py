"""gRPC ordermesh.v1.Gateway: authenticate, rate-limit, then validate, route and encode.

Every call needs an API key (`gateway.auth`); every refusal is a gRPC status with a
google.rpc.ErrorInfo: the gateway's own from one table (`ordermesh.grpcx.errors`), an
upstream's passed on unchanged (`gateway.upstream`). The streaming RPCs are not served
yet: they answer UNIMPLEMENTED, saying what to use meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, NoReturn, TypeVar

import grpc

from gateway.auth import ApiKeys, Principal
from gateway.metrics import GatewayMetrics
from gateway.orders import Deadline, OrderDesk
from gateway.ratelimit import RateLimiter
from gateway.reads import Reads
from gateway.upstream import UpstreamError
from ordermesh.grpcx import errors
from ordermesh.model import OrdermeshError
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc

SERVICE_NAME: Final = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
"""ordermesh.v1.Gateway."""

_T = TypeVar("_T")
Context = grpc.aio.ServicerContext[Any, Any]
Work = Callable[[Principal, Deadline], Awaitable[_T]]


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
        metrics: calls by method and status, latency per method.
    """

    def __init__(
        self,
        keys: ApiKeys,
        limiter: RateLimiter,
        desk: OrderDesk,
        reads: Reads,
        metrics: GatewayMetrics,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._desk = desk
        self._reads = reads
        self._metrics = metrics

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

    async def StreamOrderUpdates(  # type: ignore[override]  # grpc.aio takes a coroutine too
        self,
        request: gateway_pb2.StreamOrderUpdatesRequest,  # noqa: ARG002 - refused unread
        context: Context,
    ) -> NoReturn:
        """Not served yet: UNIMPLEMENTED."""
        await _unimplemented(context, "StreamOrderUpdates", "poll GetOrder or ListOpenOrders")

    async def StreamMarketData(  # type: ignore[override]  # grpc.aio takes a coroutine too
        self,
        request: gateway_pb2.StreamMarketDataRequest,  # noqa: ARG002 - refused unread
        context: Context,
    ) -> NoReturn:
        """Not served yet: UNIMPLEMENTED."""
        await _unimplemented(context, "StreamMarketData", "poll GetOrderBook and ListTrades")

    async def OrderEntry(  # type: ignore[override]  # grpc.aio takes a coroutine too
        self,
        request_iterator: AsyncIterator[gateway_pb2.OrderEntryRequest],  # noqa: ARG002
        context: Context,
    ) -> NoReturn:
        """Not served yet: UNIMPLEMENTED."""
        await _unimplemented(context, "OrderEntry", "use PlaceOrder and CancelOrder")


async def _abort_with(context: Context, status: grpc.Status) -> NoReturn:
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def _unimplemented(context: Context, method: str, instead: str) -> NoReturn:
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not available in this version of the gateway yet; meanwhile, {instead}",
    )
    raise AssertionError("abort returned")  # pragma: no cover
