"""gRPC ordermesh.v1.Settlement: check the request, query PostgreSQL, encode the answer.

Every refusal is an `OrdermeshError` reported as a gRPC status with a google.rpc.ErrorInfo
(`ordermesh.grpcx.errors`): a bad page_size, page_token, interval, limit or time range is
INVALID_ARGUMENT naming the field; an unknown symbol or asset is INVALID_ARGUMENT
(UNKNOWN_SYMBOL, UNKNOWN_ASSET); an order that is not the account's is NOT_FOUND
(UNKNOWN_ORDER), exactly as one that does not exist. A database that cannot be reached is
UNAVAILABLE (safe to retry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import structlog

from ordermesh.grpcx import errors
from ordermesh.markets import MarketTable
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import settlement_pb2, settlement_pb2_grpc
from settlement import codec
from settlement.core import OrderRow
from settlement.core.paging import decode_token, encode_token, page_size
from settlement.queries import Queries

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = settlement_pb2.DESCRIPTOR.services_by_name["Settlement"].full_name
"""ordermesh.v1.Settlement."""

DEFAULT_CANDLES: Final = 500
"""Candles per answer when the request's limit is 0."""
MAX_CANDLES: Final = 1000
"""The most candles one answer may hold."""

_T = TypeVar("_T")
Context = grpc.aio.ServicerContext[Any, Any]
_DATABASE_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _invalid(field: str, message: str) -> OrdermeshError:
    return OrdermeshError(RejectReason.INVALID_ARGUMENT, message, field=field)


def _token(next_key: tuple[int | str, ...] | None, listing: str) -> str:
    return "" if next_key is None else encode_token(listing, next_key)


class SettlementServicer(settlement_pb2_grpc.SettlementServicer):
    """The read side of the system of record over gRPC.

    Args:
        queries: the PostgreSQL read side.
        markets: the symbols and assets a request may name.
        clock: Unix nanoseconds now, for the ticker's window.
    """

    def __init__(self, queries: Queries, markets: MarketTable, clock: Callable[[], int]) -> None:
        self._queries = queries
        self._markets = markets
        self._clock = clock

    async def _answer(self, context: Context, work: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await work()
        except OrdermeshError as e:
            await errors.abort(context, e)
        except _DATABASE_ERRORS as e:
            log.warning("database call failed", error=repr(e))
            await errors.abort(
                context,
                OrdermeshError(
                    RejectReason.UNAVAILABLE,
                    "the settlement database is unavailable; retry later",
                ),
            )

    def _symbol(self, symbol: str) -> str:
        return self._markets.market(symbol).symbol

    async def ListTrades(
        self, request: settlement_pb2.SettlementListTradesRequest, context: Context
    ) -> settlement_pb2.SettlementListTradesResponse:
        """A symbol's trades, or an account's (either side), newest first."""

        async def work() -> settlement_pb2.SettlementListTradesResponse:
            size = page_size(request.page_size)
            symbol = self._symbol(request.symbol) if request.symbol else None
            if request.account_id:
                after = decode_token(request.page_token, "account-trades", (int, str, int))
                page = await self._queries.trades_by_account(
                    request.account_id, symbol, after, size
                )
                token = _token(page.next_key, "account-trades")
            elif symbol is not None:
                after = decode_token(request.page_token, "symbol-trades", (int,))
                page = await self._queries.trades_by_symbol(symbol, after, size)
                token = _token(page.next_key, "symbol-trades")
            else:
                raise _invalid("symbol", "give a symbol, an account_id, or both")
            return settlement_pb2.SettlementListTradesResponse(
                trades=[codec.trade_to_pb(row) for row in page.rows], next_page_token=token
            )

        return await self._answer(context, work)

    async def ListOrders(
        self, request: settlement_pb2.SettlementListOrdersRequest, context: Context
    ) -> settlement_pb2.SettlementListOrdersResponse:
        """An account's orders (all, one symbol's, or only the live ones), newest first."""

        async def work() -> settlement_pb2.SettlementListOrdersResponse:
            size = page_size(request.page_size)
            symbol = self._symbol(request.symbol) if request.symbol else None
            after = decode_token(request.page_token, "orders", (int,))
            page = await self._queries.orders(
                request.account_id, symbol, request.open_only, after, size
            )
            return settlement_pb2.SettlementListOrdersResponse(
                orders=[codec.order_to_pb(row) for row in page.rows],
                next_page_token=_token(page.next_key, "orders"),
            )

        return await self._answer(context, work)

    async def GetOrder(
        self, request: settlement_pb2.SettlementGetOrderRequest, context: Context
    ) -> settlement_pb2.SettlementGetOrderResponse:
        """One of the account's orders, by order_id or else by client_order_id."""

        async def work() -> settlement_pb2.SettlementGetOrderResponse:
            row: OrderRow | None
            if request.order_id:
                row = await self._queries.order_by_id(request.order_id)
                shown = f"order_id {request.order_id}"
            elif request.client_order_id:
                row = await self._queries.order_by_client_id(
                    request.account_id, request.client_order_id
                )
                shown = f"client_order_id {request.client_order_id!r}"
            else:
                raise _invalid("order_id", "give an order_id or a client_order_id")
            if row is None or row.account_id != request.account_id:
                raise OrdermeshError(
                    RejectReason.UNKNOWN_ORDER,
                    f"account {request.account_id} has no order with {shown}",
                    field="order_id" if request.order_id else "client_order_id",
                )
            return settlement_pb2.SettlementGetOrderResponse(order=codec.order_to_pb(row))

        return await self._answer(context, work)

    async def GetLedger(
        self, request: settlement_pb2.SettlementGetLedgerRequest, context: Context
    ) -> settlement_pb2.SettlementGetLedgerResponse:
        """An account's ledger legs (all assets or one), newest first."""

        async def work() -> settlement_pb2.SettlementGetLedgerResponse:
            size = page_size(request.page_size)
            asset = self._markets.asset(request.asset).code if request.asset else None
            after = decode_token(request.page_token, "ledger", (int,))
            page = await self._queries.ledger(request.account_id, asset, after, size)
            return settlement_pb2.SettlementGetLedgerResponse(
                entries=[codec.ledger_to_pb(entry) for entry in page.rows],
                next_page_token=_token(page.next_key, "ledger"),
            )

        return await self._answer(context, work)

    async def GetCandles(
        self, request: settlement_pb2.SettlementGetCandlesRequest, context: Context
    ) -> settlement_pb2.SettlementGetCandlesResponse:
        """Candles of 1m, 5m, 1h or 1d, rolled up from the 1-minute ones, oldest first.

        Over `limit` intervals: from start_time_ns on when it is given, else the last ones
        before end_time_ns (or up to the latest trade); an interval without trades has no
        candle.
        """

        async def work() -> settlement_pb2.SettlementGetCandlesResponse:
            symbol = self._symbol(request.symbol)
            interval = codec.interval_from_pb(request.interval)
            limit = _candle_limit(request.limit)
            start, end = request.start_time_ns, request.end_time_ns
            _check_range(start, end)
            candles = await self._queries.candles(symbol, interval.nanoseconds, start, end, limit)
            return settlement_pb2.SettlementGetCandlesResponse(
                candles=[codec.candle_to_pb(candle) for candle in candles]
            )

        return await self._answer(context, work)

    async def GetTicker(
        self, request: settlement_pb2.SettlementGetTickerRequest, context: Context
    ) -> settlement_pb2.SettlementGetTickerResponse:
        """The rolling 24 hours up to now (or the latest trade, if later)."""

        async def work() -> settlement_pb2.SettlementGetTickerResponse:
            symbol = self._symbol(request.symbol)
            ticker = await self._queries.ticker(symbol, self._clock())
            return settlement_pb2.SettlementGetTickerResponse(ticker=codec.ticker_to_pb(ticker))

        return await self._answer(context, work)


def _candle_limit(limit: int) -> int:
    if limit == 0:
        return DEFAULT_CANDLES
    if limit > MAX_CANDLES:
        raise _invalid(
            "limit", f"limit must be 1..{MAX_CANDLES} (0 for {DEFAULT_CANDLES}), was {limit}"
        )
    return limit


def _check_range(start: int, end: int) -> None:
    for field, value in (("start_time_ns", start), ("end_time_ns", end)):
        if value < 0:
            raise _invalid(field, f"{field} must be 0 (unbounded) or a Unix time, was {value}")
    if start and end and end <= start:
        raise _invalid("end_time_ns", f"end_time_ns {end} must be after start_time_ns {start}")
