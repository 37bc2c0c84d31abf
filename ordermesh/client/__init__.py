"""The ordermesh Python SDK: AsyncClient (asyncio) and Client (blocking) for the gateway.

    from ordermesh.client import Client

    with Client("127.0.0.1:50051", api_key="...") as client:
        placed = client.place_order("BTC-USDT", "BUY", "0.1", "30000")

Amounts are Decimal (str and int accepted, float refused); results are frozen dataclasses;
refusals raise ClientError subclasses carrying the gateway's code, reason and field.
"""

from ordermesh.client.aio import AsyncClient
from ordermesh.client.book import LocalBook
from ordermesh.client.entry import OrderEntrySession
from ordermesh.client.errors import (
    AlreadyExists,
    ClientError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StreamGap,
    Unauthenticated,
    Unavailable,
)
from ordermesh.client.retry import RetryPolicy
from ordermesh.client.sync import Client, SyncOrderEntrySession
from ordermesh.client.types import (
    Balance,
    BookDelta,
    BookSnapshot,
    BookUnchanged,
    CancelResult,
    Candle,
    CandleInterval,
    Fill,
    FundingResult,
    MarketEvent,
    MyTrade,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Page,
    PlaceResult,
    PriceLevel,
    PublicTrade,
    SelfTradePrevention,
    Side,
    SymbolInfo,
    Ticker,
    TimeInForce,
    TradeEvent,
    Wait,
)

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Balance",
    "BookDelta",
    "BookSnapshot",
    "BookUnchanged",
    "CancelResult",
    "Candle",
    "CandleInterval",
    "Client",
    "ClientError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Fill",
    "FundingResult",
    "Internal",
    "InvalidArgument",
    "LocalBook",
    "MarketEvent",
    "MyTrade",
    "NotFound",
    "Order",
    "OrderBook",
    "OrderEntrySession",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Page",
    "PermissionDenied",
    "PlaceResult",
    "PriceLevel",
    "PublicTrade",
    "ResourceExhausted",
    "RetryPolicy",
    "SelfTradePrevention",
    "Side",
    "StreamGap",
    "SymbolInfo",
    "SyncOrderEntrySession",
    "Ticker",
    "TimeInForce",
    "TradeEvent",
    "Unauthenticated",
    "Unavailable",
    "Wait",
]
