"""Queries: an account's orders, trades and balances; the markets, books, tickers and candles.

Order and trade history come from settlement, the system of record, and are scoped to the
caller's account there (another account's order is NOT_FOUND, exactly like one that does
not exist); balances from ubscore, the balance authority; depth from the matcher; the
markets from the table every service loads. History lags the engine by settlement's batch
delay: an order just placed may not be listed yet.
"""

from __future__ import annotations

from typing import Final

import structlog

from gateway import arguments, codec, validation
from gateway.orders import Deadline
from gateway.upstream import Upstreams
from ordermesh.markets import MarketTable
from ordermesh.model import AccountId, Asset
from ordermesh.v1 import gateway_pb2, matcher_pb2, settlement_pb2, ubscore_pb2

log = structlog.get_logger(__name__)

_OPEN_PAGE: Final = 1000
_OPEN_PAGES_MAX: Final = 100  # 100,000 open orders: far beyond what one account may hold


class Reads:
    """The read-only RPCs, routed to the service that knows the answer.

    Args:
        markets: the market table.
        upstream: the internal services.
    """

    def __init__(self, markets: MarketTable, upstream: Upstreams) -> None:
        self._markets = markets
        self._upstream = upstream

    async def get_order(
        self, account: AccountId, request: gateway_pb2.GetOrderRequest, deadline: Deadline
    ) -> gateway_pb2.GetOrderResponse:
        """One of the account's orders, by order_id or else client_order_id."""
        order_id, client_order_id = validation.order_reference(
            request.order_id, request.client_order_id
        )
        settlement = self._upstream.settlement
        answer = await self._upstream.call(
            "settlement",
            settlement.GetOrder,
            settlement_pb2.SettlementGetOrderRequest(
                account_id=account, order_id=order_id, client_order_id=client_order_id
            ),
            within=deadline.remaining(),
        )
        return gateway_pb2.GetOrderResponse(order=codec.order_to_pb(answer.order, self._markets))

    async def list_open_orders(
        self, account: AccountId, request: gateway_pb2.ListOpenOrdersRequest, deadline: Deadline
    ) -> gateway_pb2.ListOpenOrdersResponse:
        """All the account's live orders (one market's, or all), newest first."""
        market = arguments.optional_symbol(request.symbol, self._markets)
        settlement = self._upstream.settlement
        response = gateway_pb2.ListOpenOrdersResponse()
        token = ""
        for _ in range(_OPEN_PAGES_MAX):
            page = await self._upstream.call(
                "settlement",
                settlement.ListOrders,
                settlement_pb2.SettlementListOrdersRequest(
                    account_id=account,
                    symbol=market.symbol if market is not None else "",
                    open_only=True,
                    page_size=_OPEN_PAGE,
                    page_token=token,
                ),
                within=deadline.remaining(),
            )
            response.orders.extend(codec.order_to_pb(o, self._markets) for o in page.orders)
            token = page.next_page_token
            if not token:
                break
        return response

    async def list_orders(
        self, account: AccountId, request: gateway_pb2.ListOrdersRequest, deadline: Deadline
    ) -> gateway_pb2.ListOrdersResponse:
        """The account's orders, newest first, one page."""
        market = arguments.optional_symbol(request.symbol, self._markets)
        size = arguments.bounded(request.page_size, "page_size", arguments.DEFAULT_PAGE)
        settlement = self._upstream.settlement
        page = await self._upstream.call(
            "settlement",
            settlement.ListOrders,
            settlement_pb2.SettlementListOrdersRequest(
                account_id=account,
                symbol=market.symbol if market is not None else "",
                page_size=size,
                page_token=request.page_token,
            ),
            within=deadline.remaining(),
        )
        return gateway_pb2.ListOrdersResponse(
            orders=[codec.order_to_pb(order, self._markets) for order in page.orders],
            next_page_token=page.next_page_token,
        )

    async def list_my_trades(
        self, account: AccountId, request: gateway_pb2.ListMyTradesRequest, deadline: Deadline
    ) -> gateway_pb2.ListMyTradesResponse:
        """The account's fills, newest first, one page."""
        market = arguments.optional_symbol(request.symbol, self._markets)
        size = arguments.bounded(request.page_size, "page_size", arguments.DEFAULT_PAGE)
        settlement = self._upstream.settlement
        page = await self._upstream.call(
            "settlement",
            settlement.ListTrades,
            settlement_pb2.SettlementListTradesRequest(
                symbol=market.symbol if market is not None else "",
                account_id=account,
                page_size=size,
                page_token=request.page_token,
            ),
            within=deadline.remaining(),
        )
        response = gateway_pb2.ListMyTradesResponse(next_page_token=page.next_page_token)
        for trade in page.trades:
            response.trades.extend(codec.my_trades(trade, account, self._markets))
        return response

    async def get_balances(
        self, account: AccountId, deadline: Deadline
    ) -> gateway_pb2.GetBalancesResponse:
        """The account's balances as ubscore holds them now."""
        ubscore = self._upstream.ubscore
        answer = await self._upstream.call(
            "ubscore",
            ubscore.GetBalances,
            ubscore_pb2.UBSCoreGetBalancesRequest(account_id=account),
            within=deadline.remaining(),
        )
        response = gateway_pb2.GetBalancesResponse()
        for balance in answer.balances:
            asset = self._markets.assets.get(Asset(balance.asset))
            if asset is None:  # a market table older than ubscore's: show what can be shown
                log.warning("balance of an asset not in the market table", asset=balance.asset)
                continue
            response.balances.append(codec.balance_to_pb(balance, asset))
        return response

    def list_symbols(self) -> gateway_pb2.ListSymbolsResponse:
        """Every market and its rules."""
        return gateway_pb2.ListSymbolsResponse(
            symbols=[codec.symbol_info(market) for market in self._markets.markets.values()]
        )

    async def get_order_book(
        self, request: gateway_pb2.GetOrderBookRequest, deadline: Deadline
    ) -> gateway_pb2.GetOrderBookResponse:
        """Aggregated depth of one market from the matcher's live book."""
        market = self._markets.market(request.symbol)
        depth = arguments.bounded(request.depth, "depth", arguments.DEFAULT_DEPTH)
        matcher = self._upstream.matcher
        book = await self._upstream.call(
            "matcher",
            matcher.GetOrderBook,
            matcher_pb2.MatcherGetOrderBookRequest(symbol=market.symbol, depth=depth),
            within=deadline.remaining(),
        )
        return codec.book_to_pb(book, market)

    async def get_ticker(
        self, request: gateway_pb2.GetTickerRequest, deadline: Deadline
    ) -> gateway_pb2.GetTickerResponse:
        """24-hour statistics of one market."""
        market = self._markets.market(request.symbol)
        settlement = self._upstream.settlement
        answer = await self._upstream.call(
            "settlement",
            settlement.GetTicker,
            settlement_pb2.SettlementGetTickerRequest(symbol=market.symbol),
            within=deadline.remaining(),
        )
        return gateway_pb2.GetTickerResponse(ticker=codec.ticker_to_pb(answer.ticker, market))

    async def list_trades(
        self, request: gateway_pb2.ListTradesRequest, deadline: Deadline
    ) -> gateway_pb2.ListTradesResponse:
        """A market's most recent trades, newest first."""
        market = self._markets.market(request.symbol)
        limit = arguments.bounded(request.limit, "limit", arguments.DEFAULT_PAGE)
        settlement = self._upstream.settlement
        page = await self._upstream.call(
            "settlement",
            settlement.ListTrades,
            settlement_pb2.SettlementListTradesRequest(symbol=market.symbol, page_size=limit),
            within=deadline.remaining(),
        )
        return gateway_pb2.ListTradesResponse(
            trades=[codec.public_trade(trade, market) for trade in page.trades]
        )

    async def get_candles(
        self, request: gateway_pb2.GetCandlesRequest, deadline: Deadline
    ) -> gateway_pb2.GetCandlesResponse:
        """OHLCV candles of one market, oldest first."""
        wanted = arguments.candles(request, self._markets)
        settlement = self._upstream.settlement
        answer = await self._upstream.call(
            "settlement",
            settlement.GetCandles,
            settlement_pb2.SettlementGetCandlesRequest(
                symbol=wanted.market.symbol,
                interval=wanted.interval,  # type: ignore[arg-type]  # a checked proto number
                start_time_ns=wanted.start_ns,
                end_time_ns=wanted.end_ns,
                limit=wanted.limit,
            ),
            within=deadline.remaining(),
        )
        return gateway_pb2.GetCandlesResponse(
            candles=[codec.candle_to_pb(candle, wanted.market) for candle in answer.candles]
        )
