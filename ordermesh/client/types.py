"""What the SDK returns: frozen dataclasses with Decimal amounts and aware UTC datetimes.

Enumerations are plain strings, the proto enum's name without its prefix ("BUY", "LIMIT",
"PARTIALLY_FILLED"); a value the gateway left UNSPECIFIED is None where a field is optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Generic, Literal, TypeAlias, TypeVar

Side: TypeAlias = Literal["BUY", "SELL"]
"""Which side of the book an order is on."""
OrderType: TypeAlias = Literal["LIMIT", "MARKET"]
"""How an order is priced."""
TimeInForce: TypeAlias = Literal["GTC", "IOC", "FOK"]
"""How long an order may live."""
SelfTradePrevention: TypeAlias = Literal["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
"""What the matcher does when an order would trade with its own account."""
OrderStatus: TypeAlias = Literal[
    "PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"
]
"""The life of an order."""
CandleInterval: TypeAlias = Literal["1m", "5m", "1h", "1d"]
"""Candle widths."""
Wait: TypeAlias = Literal["ack", "result"]
"""When PlaceOrder/CancelOrder answer: once logged ("ack"), or with the matcher's outcome."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fill:
    """A fill of one of your orders."""

    trade_id: int
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    """price x quantity, in the quote asset."""
    fee: Decimal
    fee_asset: str
    """Fees are charged in the asset received."""
    maker: bool
    """True when your order was resting (maker) in this trade."""
    time: datetime


@dataclass(frozen=True, slots=True)
class Order:
    """One of your orders as the system of record knows it."""

    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce | None
    price: Decimal | None
    """None for a MARKET order."""
    quantity: Decimal | None
    """None for a MARKET BUY by quote budget."""
    quote_quantity: Decimal | None
    """The quote budget of a MARKET BUY; None otherwise."""
    filled_quantity: Decimal
    filled_quote_quantity: Decimal
    status: OrderStatus
    reject_reason: str | None
    """Why it was rejected or expired (e.g. "FOK_NOT_FILLABLE"); None when there is none."""
    post_only: bool
    self_trade_prevention: SelfTradePrevention | None
    """None when the system of record does not say."""
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """The answer to a placed order."""

    order_id: int
    client_order_id: str
    symbol: str
    status: OrderStatus | None
    """PENDING_NEW at "ack"; with "result", the matcher's first outcome."""
    filled_quantity: Decimal
    filled_quote_quantity: Decimal
    fills: tuple[Fill, ...]
    reject_reason: str | None
    duplicate: bool
    """True when this client_order_id was placed before: this is that order, not a new one."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The answer to a cancel."""

    order_id: int
    client_order_id: str
    symbol: str
    status: OrderStatus | None
    """None at "ack" (the matcher has not acted yet); with "result", CANCELED or how the
    order had ended before the cancel arrived."""


@dataclass(frozen=True, slots=True)
class MyTrade:
    """A trade one of your orders took part in, from your side."""

    symbol: str
    trade_id: int
    order_id: int
    side: Side
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    time: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of an account."""

    asset: str
    available: Decimal
    frozen: Decimal
    """Held for open orders."""

    @property
    def total(self) -> Decimal:
        """The whole balance: available + frozen."""
        return self.available + self.frozen


@dataclass(frozen=True, slots=True)
class FundingResult:
    """The answer to a deposit or withdrawal."""

    balance: Balance
    """The account's balance of the asset after it."""
    duplicate: bool
    """True when this reference_id was used before: nothing moved this time."""


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """A market and its rules."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    maker_fee_bps: int
    taker_fee_bps: int
    base_scale: int
    quote_scale: int


@dataclass(frozen=True, slots=True)
class PriceLevel:
    """The orders resting at one price, aggregated."""

    price: Decimal
    quantity: Decimal
    order_count: int


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Aggregated depth of one market, best first, as of `sequence`."""

    symbol: str
    sequence: int
    bids: tuple[PriceLevel, ...]
    """Highest price first."""
    asks: tuple[PriceLevel, ...]
    """Lowest price first."""


@dataclass(frozen=True, slots=True)
class Ticker:
    """24-hour statistics of one market; prices are None while it had no trade."""

    symbol: str
    last_price: Decimal | None
    open_price: Decimal | None
    high_price: Decimal | None
    low_price: Decimal | None
    volume: Decimal
    quote_volume: Decimal
    price_change: Decimal | None
    price_change_percent: Decimal | None
    trade_count: int
    open_time: datetime | None
    close_time: datetime | None


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """A trade as everyone sees it."""

    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    taker_side: Side
    time: datetime
    sequence: int
    """The market's sequence of the trade."""


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV candle."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_page_token` for the next ("" after the last)."""

    items: tuple[T, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """Something happened to one of your orders."""

    order: Order
    fill: Fill | None
    """Set when the update is a fill."""
    sequence: int
    """The market's sequence of the event behind this update."""


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """The whole book (to the depth asked for) at `sequence`; replaces what came before."""

    symbol: str
    sequence: int
    book: OrderBook


@dataclass(frozen=True, slots=True)
class BookDelta:
    """A change of one price level: `quantity` is the new total there (0: level gone)."""

    symbol: str
    sequence: int
    side: Side
    price: Decimal
    quantity: Decimal
    order_count: int


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A public trade on the market-data stream."""

    symbol: str
    sequence: int
    trade: PublicTrade


@dataclass(frozen=True, slots=True)
class BookUnchanged:
    """An engine event that changed nothing visible (e.g. a refused order).

    Only the market's sequence moves on; a LocalBook needs it to match GetOrderBook's.
    """

    symbol: str
    sequence: int


MarketEvent: TypeAlias = BookSnapshot | BookDelta | TradeEvent | BookUnchanged
"""What `market_data` yields: a snapshot first, then deltas, trades and sequence steps."""
