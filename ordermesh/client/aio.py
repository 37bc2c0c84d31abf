"""AsyncClient: the whole ordermesh.v1.Gateway API for asyncio code.

Every call carries the API key (metadata `x-api-key`) and a deadline (`timeout`, per
attempt), answers with frozen dataclasses, and raises a typed `ClientError` on refusal.
UNAVAILABLE is retried with backoff for every call, DEADLINE_EXCEEDED for reads; writes are
retried with the very same client_order_id or reference_id, so the gateway recognises a
retry and answers with the original instead of placing or crediting twice.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import grpc

from ordermesh.client import convert, decode, requests, streams
from ordermesh.client.convert import Amount
from ordermesh.client.entry import OrderEntrySession
from ordermesh.client.retry import CallKind, RetryPolicy, call_with_retry
from ordermesh.client.types import (
    Balance,
    CancelResult,
    Candle,
    CandleInterval,
    FundingResult,
    MarketEvent,
    MyTrade,
    Order,
    OrderBook,
    OrderType,
    OrderUpdate,
    Page,
    PlaceResult,
    PublicTrade,
    SelfTradePrevention,
    Side,
    SymbolInfo,
    Ticker,
    TimeInForce,
    Wait,
)
from ordermesh.v1 import gateway_pb2 as pb
from ordermesh.v1 import gateway_pb2_grpc

DEFAULT_TARGET: Final = "127.0.0.1:50051"
"""The gateway `ordermesh up` starts."""
TARGET_VARIABLE: Final = "ORDERMESH_TARGET"
"""Environment variable read when no target is given."""
API_KEY_VARIABLE: Final = "ORDERMESH_API_KEY"
"""Environment variable read when no api_key is given."""
API_KEY_HEADER: Final = "x-api-key"
"""The metadata key that carries the API key."""

_CHANNEL_DEFAULTS: Final[tuple[tuple[str, Any], ...]] = (
    # Reconnect quickly after a gateway restart, so retries find it back within their
    # backoff instead of failing fast while the channel waits out gRPC's long default.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class AsyncClient:
    """A connection to an ordermesh gateway, for asyncio code.

    Use it as `async with AsyncClient(...) as client:`, or call `close()` when done. The
    channel opens on the first call, on the running event loop.

    Args:
        target: the gateway, host:port; else $ORDERMESH_TARGET, else 127.0.0.1:50051.
        api_key: the key calls are made with; else $ORDERMESH_API_KEY.
        timeout: the deadline of each attempt of a unary call, in seconds.
        retries: how many times a retryable failure is tried again (0: never).
        retry_backoff: seconds before the first retry; doubled for each next one.
        retry_max_backoff: the longest wait between two attempts.
        secure: TLS to the gateway.
        root_certificates: PEM roots for TLS; the system's when None.
        channel_options: extra grpc channel options (they win over the SDK's defaults).
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        retry_backoff: float = 0.1,
        retry_max_backoff: float = 2.0,
        secure: bool = False,
        root_certificates: bytes | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, was {timeout}")
        self.target = target or os.environ.get(TARGET_VARIABLE) or DEFAULT_TARGET
        key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE, "")
        self._metadata: tuple[tuple[str, str], ...] = ((API_KEY_HEADER, key),) if key else ()
        self.timeout = timeout
        self.retry_policy = RetryPolicy(retries, retry_backoff, retry_max_backoff)
        self._secure = secure
        self._roots = root_certificates
        chosen = {name for name, _ in channel_options}
        defaults = [option for option in _CHANNEL_DEFAULTS if option[0] not in chosen]
        self._options = (*defaults, *channel_options)
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: gateway_pb2_grpc.GatewayAsyncStub | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls and streams still running end with CANCELLED."""
        if self._channel is not None:
            channel, self._channel, self._stub_instance = self._channel, None, None
            await channel.close()

    def _stub(self) -> gateway_pb2_grpc.GatewayAsyncStub:
        if self._stub_instance is None:
            if self._secure:
                credentials = grpc.ssl_channel_credentials(root_certificates=self._roots)
                channel = grpc.aio.secure_channel(self.target, credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(self.target, self._options)
            self._channel = channel
            self._stub_instance = gateway_pb2_grpc.GatewayStub(channel)
        return self._stub_instance

    async def _call(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        kind: CallKind,
        deadline: float | None,
    ) -> Resp:
        seconds = self.timeout if deadline is None else deadline

        async def attempt() -> Resp:
            return await rpc(request, timeout=seconds, metadata=self._metadata)

        return await call_with_retry(attempt, self.retry_policy, kind)

    # --- orders ------------------------------------------------------------------------

    async def place_order(
        self,
        symbol: str,
        side: Side,
        quantity: Amount | None = None,
        price: Amount | None = None,
        *,
        order_type: OrderType | None = None,
        time_in_force: TimeInForce | None = None,
        quote_quantity: Amount | None = None,
        post_only: bool = False,
        self_trade_prevention: SelfTradePrevention | None = None,
        client_order_id: str | None = None,
        wait: Wait = "ack",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> PlaceResult:
        """Place an order for the key's account.

        Args:
            symbol: the market, e.g. "BTC-USDT".
            side: "BUY" or "SELL".
            quantity: base amount (Decimal, str or int; a float is refused).
            price: LIMIT price; leave it out for a MARKET order.
            order_type: "LIMIT" or "MARKET"; LIMIT when a price is given, else MARKET.
            time_in_force: "GTC", "IOC" or "FOK"; the gateway's default (GTC for LIMIT,
                IOC for MARKET) when None.
            quote_quantity: a MARKET BUY's budget in the quote asset.
            post_only: refuse the order if it would take liquidity.
            self_trade_prevention: "NONE", "EXPIRE_TAKER" (the gateway's default),
                "EXPIRE_MAKER" or "EXPIRE_BOTH".
            client_order_id: your id for the order (1-36 of [A-Za-z0-9_-]); generated when
                None. Retries resend it, so the order is never placed twice.
            wait: "ack" answers once the funds are frozen and the order logged
                (PENDING_NEW); "result" waits for the matcher's first outcome and fills.
            timeout: the deadline of each attempt; the client's when None.

        Returns:
            The order's id and state; `duplicate` is True when the client_order_id had
            been placed before (this is that order).

        Raises:
            TypeError: an amount given as a float.
            ValueError: an unknown side, type, time in force, mode or wait.
            InvalidArgument: a field the gateway refused (`field` names it).
            FailedPrecondition: e.g. reason INSUFFICIENT_FUNDS.
            ClientError: any other refusal.
        """
        request = requests.place_request(
            symbol,
            side,
            quantity,
            price,
            order_type=order_type,
            time_in_force=time_in_force,
            quote_quantity=quote_quantity,
            post_only=post_only,
            self_trade_prevention=self_trade_prevention,
            client_order_id=client_order_id,
            wait=wait,
        )
        answer = await self._call(self._stub().PlaceOrder, request, CallKind.KEYED_WRITE, timeout)
        return decode.place_result(answer)

    async def cancel_order(
        self,
        symbol: str,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        wait: Wait = "ack",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> CancelResult:
        """Cancel one of your orders, by order_id or else client_order_id.

        Args:
            symbol: the order's market.
            order_id: the order's id.
            client_order_id: your id for it, when no order_id is given.
            wait: "ack" answers once the cancel is logged (status None: the matcher has
                not acted); "result" waits for CANCELED or how the order had ended.
            timeout: the deadline of each attempt; the client's when None.

        Raises:
            ValueError: neither order_id nor client_order_id.
            NotFound: no such open order of yours.
            ClientError: any other refusal.
        """
        request = requests.cancel_request(
            symbol, order_id, client_order_id=client_order_id, wait=wait
        )
        answer = await self._call(self._stub().CancelOrder, request, CallKind.KEYED_WRITE, timeout)
        return decode.cancel_result(answer)

    async def get_order(
        self,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> Order:
        """One of your orders, by order_id or else client_order_id, from the system of record.

        An order placed a moment ago may not be there yet (NotFound for a short while).

        Raises:
            ValueError: neither order_id nor client_order_id.
            NotFound: no such order of yours.
        """
        request = requests.order_reference(order_id, client_order_id)
        answer = await self._call(self._stub().GetOrder, request, CallKind.READ, timeout)
        return decode.order(answer.order)

    async def list_open_orders(
        self,
        symbol: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> list[Order]:
        """Your orders still on the book, newest first; all markets when symbol is None."""
        request = pb.ListOpenOrdersRequest(symbol=symbol or "")
        answer = await self._call(self._stub().ListOpenOrders, request, CallKind.READ, timeout)
        return [decode.order(order) for order in answer.orders]

    async def list_orders(
        self,
        symbol: str | None = None,
        *,
        page_size: int = 100,
        page_token: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> Page[Order]:
        """One page of your orders, newest first (page_size 1-1000)."""
        request = requests.page_request(pb.ListOrdersRequest, symbol, page_size, page_token)
        answer = await self._call(self._stub().ListOrders, request, CallKind.READ, timeout)
        items = tuple(decode.order(order) for order in answer.orders)
        return Page(items, answer.next_page_token)

    async def iter_orders(
        self, symbol: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[Order]:
        """All your orders, newest first, fetched a page at a time."""
        token = ""
        while True:
            page = await self.list_orders(symbol, page_size=page_size, page_token=token)
            for order in page.items:
                yield order
            token = page.next_page_token
            if not token:
                return

    async def list_my_trades(
        self,
        symbol: str | None = None,
        *,
        page_size: int = 100,
        page_token: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> Page[MyTrade]:
        """One page of your fills, newest first (page_size 1-1000)."""
        request = requests.page_request(pb.ListMyTradesRequest, symbol, page_size, page_token)
        answer = await self._call(self._stub().ListMyTrades, request, CallKind.READ, timeout)
        return Page(tuple(decode.my_trade(t) for t in answer.trades), answer.next_page_token)

    async def get_balances(self, *, timeout: float | None = None) -> dict[str, Balance]:  # noqa: ASYNC109 - a gRPC deadline the gateway sees
        """Your balances by asset, as the balance authority holds them now."""
        request = pb.GetBalancesRequest()
        answer = await self._call(self._stub().GetBalances, request, CallKind.READ, timeout)
        return {b.asset: decode.balance(b) for b in answer.balances}

    # --- markets -------------------------------------------------------------------------

    async def list_symbols(self, *, timeout: float | None = None) -> list[SymbolInfo]:  # noqa: ASYNC109 - a gRPC deadline the gateway sees
        """The markets and their rules."""
        request = pb.ListSymbolsRequest()
        answer = await self._call(self._stub().ListSymbols, request, CallKind.READ, timeout)
        return [decode.symbol_info(s) for s in answer.symbols]

    async def get_order_book(
        self,
        symbol: str,
        depth: int = 20,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> OrderBook:
        """Aggregated depth of one market, `depth` levels per side (1-1000), best first."""
        request = pb.GetOrderBookRequest(symbol=symbol, depth=depth)
        answer = await self._call(self._stub().GetOrderBook, request, CallKind.READ, timeout)
        return decode.order_book(answer)

    async def get_ticker(self, symbol: str, *, timeout: float | None = None) -> Ticker:  # noqa: ASYNC109 - a gRPC deadline the gateway sees
        """24-hour statistics of one market."""
        request = pb.GetTickerRequest(symbol=symbol)
        answer = await self._call(self._stub().GetTicker, request, CallKind.READ, timeout)
        return decode.ticker(answer.ticker)

    async def list_trades(
        self,
        symbol: str,
        limit: int = 100,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> list[PublicTrade]:
        """The market's most recent trades (1-1000), newest first."""
        request = pb.ListTradesRequest(symbol=symbol, limit=limit)
        answer = await self._call(self._stub().ListTrades, request, CallKind.READ, timeout)
        return [decode.public_trade(t) for t in answer.trades]

    async def get_candles(
        self,
        symbol: str,
        interval: CandleInterval = "1m",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 500,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> list[Candle]:
        """OHLCV candles of one market, oldest first.

        Args:
            symbol: the market.
            interval: "1m", "5m", "1h" or "1d".
            start: the earliest open time (aware datetime); unbounded when None.
            end: the latest; unbounded when None.
            limit: at most this many (1-1000).
            timeout: the deadline of each attempt; the client's when None.

        Raises:
            ValueError: an unknown interval or a naive datetime.
        """
        request = pb.GetCandlesRequest(
            symbol=symbol, interval=convert.interval_number(interval), limit=limit
        )
        if start is not None:
            request.start_time.CopyFrom(convert.timestamp_of(start, "start"))
        if end is not None:
            request.end_time.CopyFrom(convert.timestamp_of(end, "end"))
        answer = await self._call(self._stub().GetCandles, request, CallKind.READ, timeout)
        return [decode.candle(c) for c in answer.candles]

    # --- funding (admin keys) --------------------------------------------------------------

    async def deposit(
        self,
        account_id: int,
        asset: str,
        amount: Amount,
        *,
        reference_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> FundingResult:
        """Credit an account (admin keys only).

        Args:
            account_id: the account to credit.
            asset: e.g. "USDT".
            amount: Decimal, str or int (a float is refused).
            reference_id: the deposit's unique id (1-64 of [A-Za-z0-9_.:-]); generated when
                None. Retries resend it: the account is credited once.
            timeout: the deadline of each attempt; the client's when None.

        Raises:
            PermissionDenied: a key without the admin role.
            AlreadyExists: the reference_id was used for a different deposit.
        """
        request = requests.funding_request(
            pb.DepositRequest, account_id, asset, amount, reference_id
        )
        answer = await self._call(self._stub().Deposit, request, CallKind.KEYED_WRITE, timeout)
        return decode.funding_result(answer)

    async def withdraw(
        self,
        account_id: int,
        asset: str,
        amount: Amount,
        *,
        reference_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline the gateway sees
    ) -> FundingResult:
        """Debit an account's available funds (admin keys only); as `deposit`.

        Raises:
            FailedPrecondition: reason INSUFFICIENT_FUNDS when the account has too little.
        """
        request = requests.funding_request(
            pb.WithdrawRequest, account_id, asset, amount, reference_id
        )
        answer = await self._call(self._stub().Withdraw, request, CallKind.KEYED_WRITE, timeout)
        return decode.funding_result(answer)

    # --- streams ---------------------------------------------------------------------------

    def order_updates(self, symbol: str | None = None) -> AsyncIterator[OrderUpdate]:
        """Your order updates as they happen (one market's, or all when symbol is None).

        An async iterator that subscribes again after UNAVAILABLE or RESOURCE_EXHAUSTED;
        `aclose()` it (or leave an `async for`) to unsubscribe. Updates that happen while
        it is reconnecting are not replayed: reconcile with `list_open_orders`.
        """
        request = pb.StreamOrderUpdatesRequest(symbol=symbol or "")

        def open_call() -> streams.StreamCall[pb.StreamOrderUpdatesResponse]:
            return self._stub().StreamOrderUpdates(request, metadata=self._metadata)

        return streams.order_updates(open_call, self.retry_policy)

    def market_data(self, symbol: str, depth: int = 20) -> AsyncIterator[MarketEvent]:
        """One market's book and trades: a BookSnapshot, then BookDelta and TradeEvent.

        Sequences are checked: on a gap (or after UNAVAILABLE / RESOURCE_EXHAUSTED) it
        subscribes again and yields a new BookSnapshot, so a `LocalBook` that applies
        every event stays exact.

        Raises:
            StreamGap: gaps kept recurring right after each new snapshot.
        """
        request = pb.StreamMarketDataRequest(symbol=symbol, depth=depth)

        def open_call() -> streams.StreamCall[pb.StreamMarketDataResponse]:
            return self._stub().StreamMarketData(request, metadata=self._metadata)

        return streams.market_events(open_call, self.retry_policy)

    def order_entry(self, *, window: int = 1000) -> OrderEntrySession:
        """A session for many orders on one OrderEntry stream (`async with`).

        Args:
            window: the most requests unanswered at once; `place` and `cancel` wait for
                room when it is full.
        """

        def open_call() -> grpc.aio.StreamStreamCall[pb.OrderEntryRequest, pb.OrderEntryResponse]:
            return self._stub().OrderEntry(metadata=self._metadata)

        return OrderEntrySession(open_call, window, self.retry_policy)
