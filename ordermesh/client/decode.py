"""The gateway's protobuf answers as the SDK's frozen dataclasses."""

from __future__ import annotations

from decimal import Decimal

from ordermesh.client import types as t
from ordermesh.client.convert import (
    datetime_of,
    decimal,
    optional_datetime,
    optional_decimal,
    order_type_name,
    reason_name,
    self_trade_prevention_name,
    side_name,
    status_name,
    time_in_force_name,
)
from ordermesh.v1 import gateway_pb2 as pb


def fill(message: pb.Fill) -> t.Fill:
    """A Fill."""
    return t.Fill(
        trade_id=message.trade_id,
        price=decimal(message.price),
        quantity=decimal(message.quantity),
        quote_quantity=decimal(message.quote_quantity),
        fee=decimal(message.fee),
        fee_asset=message.fee_asset,
        maker=message.maker,
        time=datetime_of(message.time),
    )


def order(message: pb.Order) -> t.Order:
    """An Order.

    Raises:
        ValueError: the order has no status (the gateway always sets one).
    """
    status = status_name(message.status)
    if status is None:
        raise ValueError(f"the gateway sent order {message.order_id} without a status")
    return t.Order(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        symbol=message.symbol,
        side=side_name(message.side),
        order_type=order_type_name(message.order_type),
        time_in_force=time_in_force_name(message.time_in_force),
        price=optional_decimal(message.price),
        quantity=optional_decimal(message.quantity),
        quote_quantity=optional_decimal(message.quote_quantity),
        filled_quantity=decimal(message.filled_quantity or "0"),
        filled_quote_quantity=decimal(message.filled_quote_quantity or "0"),
        status=status,
        reject_reason=reason_name(message.reject_reason),
        post_only=message.post_only,
        self_trade_prevention=self_trade_prevention_name(message.self_trade_prevention),
        created_at=optional_datetime(message.created_at),
        updated_at=optional_datetime(message.updated_at),
    )


def place_result(message: pb.PlaceOrderResponse) -> t.PlaceResult:
    """A PlaceResult."""
    return t.PlaceResult(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        symbol=message.symbol,
        status=status_name(message.status),
        filled_quantity=decimal(message.filled_quantity or "0"),
        filled_quote_quantity=decimal(message.filled_quote_quantity or "0"),
        fills=tuple(fill(f) for f in message.fills),
        reject_reason=reason_name(message.reject_reason),
        duplicate=message.duplicate,
    )


def cancel_result(message: pb.CancelOrderResponse) -> t.CancelResult:
    """A CancelResult."""
    return t.CancelResult(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        symbol=message.symbol,
        status=status_name(message.status),
    )


def my_trade(message: pb.MyTrade) -> t.MyTrade:
    """A MyTrade."""
    return t.MyTrade(
        symbol=message.symbol,
        trade_id=message.trade_id,
        order_id=message.order_id,
        side=side_name(message.side),
        price=decimal(message.price),
        quantity=decimal(message.quantity),
        quote_quantity=decimal(message.quote_quantity),
        fee=decimal(message.fee),
        fee_asset=message.fee_asset,
        maker=message.maker,
        time=datetime_of(message.time),
    )


def balance(message: pb.Balance) -> t.Balance:
    """A Balance."""
    return t.Balance(
        asset=message.asset,
        available=decimal(message.available or "0"),
        frozen=decimal(message.frozen or "0"),
    )


def symbol_info(message: pb.SymbolInfo) -> t.SymbolInfo:
    """A SymbolInfo."""
    return t.SymbolInfo(
        symbol=message.symbol,
        base_asset=message.base_asset,
        quote_asset=message.quote_asset,
        tick_size=decimal(message.tick_size),
        lot_size=decimal(message.lot_size),
        min_quantity=decimal(message.min_quantity),
        min_notional=decimal(message.min_notional),
        maker_fee_bps=message.maker_fee_bps,
        taker_fee_bps=message.taker_fee_bps,
        base_scale=message.base_scale,
        quote_scale=message.quote_scale,
    )


def funding_result(message: pb.DepositResponse | pb.WithdrawResponse) -> t.FundingResult:
    """A FundingResult."""
    return t.FundingResult(balance(message.balance), message.duplicate)


def price_level(message: pb.PriceLevel) -> t.PriceLevel:
    """A PriceLevel."""
    return t.PriceLevel(
        price=decimal(message.price),
        quantity=decimal(message.quantity),
        order_count=message.order_count,
    )


def order_book(message: pb.GetOrderBookResponse) -> t.OrderBook:
    """An OrderBook."""
    return t.OrderBook(
        symbol=message.symbol,
        sequence=message.sequence,
        bids=tuple(price_level(level) for level in message.bids),
        asks=tuple(price_level(level) for level in message.asks),
    )


def ticker(message: pb.Ticker) -> t.Ticker:
    """A Ticker; its prices are None while the market had no trade in the window."""
    traded = message.trade_count > 0

    def price(text: str) -> Decimal | None:
        return optional_decimal(text) if traded else None

    return t.Ticker(
        symbol=message.symbol,
        last_price=price(message.last_price),
        open_price=price(message.open_price),
        high_price=price(message.high_price),
        low_price=price(message.low_price),
        volume=decimal(message.volume or "0"),
        quote_volume=decimal(message.quote_volume or "0"),
        price_change=price(message.price_change),
        price_change_percent=price(message.price_change_percent),
        trade_count=message.trade_count,
        open_time=optional_datetime(message.open_time),
        close_time=optional_datetime(message.close_time),
    )


def public_trade(message: pb.PublicTrade) -> t.PublicTrade:
    """A PublicTrade."""
    return t.PublicTrade(
        symbol=message.symbol,
        trade_id=message.trade_id,
        price=decimal(message.price),
        quantity=decimal(message.quantity),
        quote_quantity=decimal(message.quote_quantity),
        taker_side=side_name(message.taker_side),
        time=datetime_of(message.time),
        sequence=message.sequence,
    )


def candle(message: pb.Candle) -> t.Candle:
    """A Candle."""
    return t.Candle(
        open_time=datetime_of(message.open_time),
        open=decimal(message.open),
        high=decimal(message.high),
        low=decimal(message.low),
        close=decimal(message.close),
        volume=decimal(message.volume),
        quote_volume=decimal(message.quote_volume),
        trade_count=message.trade_count,
    )


def order_update(message: pb.StreamOrderUpdatesResponse) -> t.OrderUpdate:
    """An OrderUpdate."""
    return t.OrderUpdate(
        order=order(message.order),
        fill=fill(message.fill) if message.HasField("fill") else None,
        sequence=message.sequence,
    )


def market_event(message: pb.StreamMarketDataResponse) -> t.MarketEvent:
    """A BookSnapshot, BookDelta, TradeEvent, or BookUnchanged for a message without data."""
    kind = message.WhichOneof("data")
    if kind == "snapshot":
        book = order_book(message.snapshot)
        return t.BookSnapshot(message.symbol, message.sequence, book)
    if kind == "delta":
        delta = message.delta
        return t.BookDelta(
            symbol=message.symbol,
            sequence=message.sequence,
            side=side_name(delta.side),
            price=decimal(delta.price),
            quantity=decimal(delta.quantity),
            order_count=delta.order_count,
        )
    if kind == "trade":
        return t.TradeEvent(message.symbol, message.sequence, public_trade(message.trade))
    return t.BookUnchanged(message.symbol, message.sequence)
