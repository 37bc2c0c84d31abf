"""Builders of commands and a driver that numbers offsets, for the matcher tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from matcher.core import OrderBook, OrderSnapshot
from ordermesh.events import (
    CancelOrder,
    CancelRejected,
    EngineEvent,
    NewOrder,
    OrderAccepted,
    OrderCommand,
    OrderDone,
    TradeExecuted,
)
from ordermesh.markets import AssetSpec, Market
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)

SYMBOL = Symbol("BTC-USDT")
MARKET = Market(
    symbol=SYMBOL,
    base=AssetSpec(Asset("BTC"), 8),
    quote=AssetSpec(Asset("USDT"), 6),
    tick_size=10_000,  # 0.01 USDT
    lot_size=10_000,  # 0.0001 BTC
    min_quantity=10_000,
    min_notional=1_000_000,  # 1 USDT
    maker_fee_bps=10,
    taker_fee_bps=20,
)
ETH = Market(
    symbol=Symbol("ETH-USDT"),
    base=AssetSpec(Asset("ETH"), 8),
    quote=AssetSpec(Asset("USDT"), 6),
    tick_size=10_000,
    lot_size=10_000,
    min_quantity=10_000,
    min_notional=1_000_000,
    maker_fee_bps=0,
    taker_fee_bps=0,
)
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
NONE = SelfTradePrevention.NONE


def usdt(value: str | int) -> int:
    """Quote atoms (scale 6) of a USDT amount or price."""
    return int(Decimal(value) * 10**6)


def btc(value: str | int) -> int:
    """Base atoms (scale 8) of a BTC quantity."""
    return int(Decimal(value) * 10**8)


def limit(
    order_id: int,
    side: Side,
    price: int,
    quantity: int,
    *,
    account: int = 1,
    tif: TimeInForce = GTC,
    post_only: bool = False,
    stp: SelfTradePrevention = NONE,
    client: str | None = None,
    symbol: Symbol = SYMBOL,
    timestamp: int = 0,
) -> NewOrder:
    """A LIMIT NewOrder; client_order_id defaults to "c<order_id>"."""
    return NewOrder(
        symbol=symbol,
        order_id=OrderId(order_id),
        account_id=AccountId(account),
        client_order_id=ClientOrderId(f"c{order_id}" if client is None else client),
        side=side,
        order_type=OrderType.LIMIT,
        time_in_force=tif,
        price=price,
        quantity=quantity,
        quote_budget=0,
        post_only=post_only,
        self_trade_prevention=stp,
        timestamp_ns=timestamp or 1_000 + order_id,
    )


def market(
    order_id: int,
    side: Side,
    quantity: int = 0,
    *,
    budget: int = 0,
    account: int = 1,
    tif: TimeInForce = IOC,
    stp: SelfTradePrevention = NONE,
    client: str | None = None,
) -> NewOrder:
    """A MARKET NewOrder: by quantity, or (BUY) by quote budget."""
    return NewOrder(
        symbol=SYMBOL,
        order_id=OrderId(order_id),
        account_id=AccountId(account),
        client_order_id=ClientOrderId(f"c{order_id}" if client is None else client),
        side=side,
        order_type=OrderType.MARKET,
        time_in_force=tif,
        price=0,
        quantity=quantity,
        quote_budget=budget,
        post_only=False,
        self_trade_prevention=stp,
        timestamp_ns=1_000 + order_id,
    )


def cancel(order_id: int = 0, *, account: int = 1, client: str = "") -> CancelOrder:
    """A CancelOrder by order_id (or by client_order_id when order_id is 0)."""
    return CancelOrder(
        symbol=SYMBOL,
        account_id=AccountId(account),
        order_id=OrderId(order_id),
        client_order_id=ClientOrderId(client),
        timestamp_ns=9_999,
    )


@dataclass
class Driver:
    """Feeds commands to a book at consecutive offsets and keeps every event."""

    book: OrderBook = field(default_factory=lambda: OrderBook(MARKET))
    offset: int = 0
    events: list[EngineEvent] = field(default_factory=list)

    def resting(self, order_id: int) -> OrderSnapshot | None:
        """The resting order `order_id`, if it is on the book."""
        return self.book.order(OrderId(order_id))

    def send(self, command: OrderCommand) -> list[Any]:
        """Apply `command` at the next offset; return the bodies of its events."""
        out = self.book.apply(command, self.offset)
        self.offset += 1
        self.events.extend(out)
        return [event.body for event in out]


def trades(bodies: list[Any]) -> list[TradeExecuted]:
    """The TradeExecuted bodies among `bodies`."""
    return [body for body in bodies if isinstance(body, TradeExecuted)]


def dones(bodies: list[Any]) -> list[OrderDone]:
    """The OrderDone bodies among `bodies`."""
    return [body for body in bodies if isinstance(body, OrderDone)]


def kinds(bodies: list[Any]) -> list[str]:
    """A compact picture of the event sequence: A, T, D:<status>, R."""
    names: list[str] = []
    for body in bodies:
        if isinstance(body, OrderAccepted):
            names.append("A")
        elif isinstance(body, TradeExecuted):
            names.append("T")
        elif isinstance(body, OrderDone):
            names.append(f"D:{body.status.name}")
        elif isinstance(body, CancelRejected):
            names.append("R")
    return names


def order_done(  # noqa: PLR0917 - reads like the event's own field order
    order_id: int,
    status: OrderStatus,
    reason: RejectReason,
    filled: int,
    remaining: int,
    filled_quote: int,
    *,
    side: Side,
    price: int,
    account: int = 1,
    client: str | None = None,
) -> OrderDone:
    """An expected OrderDone, from plain ints."""
    return OrderDone(
        order_id=OrderId(order_id),
        account_id=AccountId(account),
        client_order_id=ClientOrderId(f"c{order_id}" if client is None else client),
        status=status,
        reason=reason,
        filled_quantity=filled,
        remaining_quantity=remaining,
        filled_quote_quantity=filled_quote,
        side=side,
        price=price,
    )


def cancel_rejected(command: CancelOrder) -> CancelRejected:
    """The CancelRejected(UNKNOWN_ORDER) that echoes `command`."""
    return CancelRejected(
        order_id=command.order_id,
        account_id=command.account_id,
        client_order_id=command.client_order_id,
        reason=RejectReason.UNKNOWN_ORDER,
    )
