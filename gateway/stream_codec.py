"""The live streams' values -> the public contract's messages (decimal strings, Timestamps)."""

from __future__ import annotations

from gateway import codec
from gateway.stream_state import OrderUpdate
from ordermesh.events import TradeExecuted
from ordermesh.markets import Market, MarketTable
from ordermesh.model import Side
from ordermesh.v1 import gateway_pb2


def _number(value: object) -> int:
    """A model enum (same numbers as the proto's), or 0 (UNSPECIFIED) when unknown."""
    return 0 if value is None else int(value)  # type: ignore[call-overload]


def order_update(
    update: OrderUpdate, markets: MarketTable
) -> gateway_pb2.StreamOrderUpdatesResponse:
    """One update of the caller's order.

    Fields the engine log does not carry (post_only, self_trade_prevention), and for an
    order older than the gateway's tail those its events did not tell, are left unset.
    """
    order = update.order
    market = markets.market(order.symbol)
    message = gateway_pb2.StreamOrderUpdatesResponse(
        order=gateway_pb2.Order(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=_number(order.side),  # type: ignore[arg-type]  # same numbers as the proto
            order_type=_number(order.order_type),  # type: ignore[arg-type]
            time_in_force=_number(order.time_in_force),  # type: ignore[arg-type]
            price=market.format_price(order.price) if order.price else "",
            quantity=market.format_quantity(order.quantity) if order.quantity else "",
            quote_quantity=market.format_quote(order.quote_budget) if order.quote_budget else "",
            filled_quantity=market.format_quantity(order.filled_quantity),
            filled_quote_quantity=market.format_quote(order.filled_quote_quantity),
            status=int(order.status),  # type: ignore[arg-type]
            reject_reason=int(order.reason),  # type: ignore[arg-type]
            updated_at=codec.timestamp(order.updated_ns),
        ),
        sequence=update.sequence,
    )
    if order.created_ns:
        message.order.created_at.CopyFrom(codec.timestamp(order.created_ns))
    if update.fill is not None:
        message.fill.CopyFrom(codec.fill_to_pb(update.fill, market))
    return message


def public_trade(
    trade: TradeExecuted, market: Market, sequence: int, timestamp_ns: int
) -> gateway_pb2.PublicTrade:
    """A trade as everyone sees it."""
    return gateway_pb2.PublicTrade(
        symbol=market.symbol,
        trade_id=trade.trade_id,
        price=market.format_price(trade.price),
        quantity=market.format_quantity(trade.quantity),
        quote_quantity=market.format_quote(trade.quote_quantity),
        taker_side=int(trade.taker_side),  # type: ignore[arg-type]
        time=codec.timestamp(timestamp_ns),
        sequence=sequence,
    )


def book_delta(
    market: Market, side: Side, price: int, quantity: int, order_count: int
) -> gateway_pb2.BookDelta:
    """One level's new total ("0" with order_count 0: the level is gone)."""
    return gateway_pb2.BookDelta(
        side=int(side),  # type: ignore[arg-type]
        price=market.format_price(price),
        quantity=market.format_quantity(quantity),
        order_count=order_count,
    )
