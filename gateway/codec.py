"""Internal atoms and Unix nanoseconds <-> the public contract's decimal strings and Timestamps.

Every amount is formatted by its market or asset (`Market.format_*`), so a price has the
quote's decimals and a quantity the base's; nothing here rounds. A field that does not
apply (the price of a MARKET order, the budget of a LIMIT one) is the empty string, as a
client would have sent it.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.outcomes import Fill, OrderOutcome
from ordermesh import amounts
from ordermesh.markets import AssetSpec, Market, MarketTable
from ordermesh.model import AccountId, Side
from ordermesh.v1 import (
    common_pb2,
    gateway_pb2,
    matcher_pb2,
    settlement_pb2,
    ubscore_pb2,
)

_NS: Final = 1_000_000_000
_PERCENT: Final = Decimal("0.01")


def timestamp(nanoseconds: int) -> Timestamp:
    """A Timestamp of Unix nanoseconds."""
    seconds, nanos = divmod(nanoseconds, _NS)
    return Timestamp(seconds=seconds, nanos=nanos)


def _optional(value: int, show: object) -> str:
    return "" if value == 0 else str(show)


def fill_to_pb(fill: Fill, market: Market) -> gateway_pb2.Fill:
    """A fill as the client sees it."""
    scale = market.base.scale if fill.fee_asset == market.base.code else market.quote.scale
    return gateway_pb2.Fill(
        trade_id=fill.trade_id,
        price=market.format_price(fill.price),
        quantity=market.format_quantity(fill.quantity),
        quote_quantity=market.format_quote(fill.quote_quantity),
        fee=amounts.format_atoms(fill.fee, scale),
        fee_asset=fill.fee_asset,
        maker=fill.maker,
        time=timestamp(fill.timestamp_ns),
    )


def place_response(
    reserved: ubscore_pb2.UBSCoreReserveResponse,
    market: Market,
    outcome: OrderOutcome | None,
) -> gateway_pb2.PlaceOrderResponse:
    """The PlaceOrder answer: PENDING_NEW without an outcome, else the matcher's answer."""
    response = gateway_pb2.PlaceOrderResponse(
        order_id=reserved.order_id,
        client_order_id=reserved.client_order_id,
        symbol=market.symbol,
        status=common_pb2.ORDER_STATUS_PENDING_NEW,
        filled_quantity="0",
        filled_quote_quantity="0",
        duplicate=reserved.duplicate,
    )
    if outcome is not None:
        response.status = int(outcome.status)  # type: ignore[assignment]  # same numbers
        response.reject_reason = int(outcome.reason)  # type: ignore[assignment]
        response.filled_quantity = market.format_quantity(outcome.filled_quantity)
        response.filled_quote_quantity = market.format_quote(outcome.filled_quote_quantity)
        response.fills.extend(fill_to_pb(fill, market) for fill in outcome.fills)
    return response


def order_to_pb(order: settlement_pb2.SettledOrder, markets: MarketTable) -> gateway_pb2.Order:
    """An order from the system of record, in the client's units."""
    market = markets.market(order.symbol)
    return gateway_pb2.Order(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        price=_optional(order.price, market.format_price(order.price)),
        quantity=_optional(order.quantity, market.format_quantity(order.quantity)),
        quote_quantity=_optional(order.quote_budget, market.format_quote(order.quote_budget)),
        filled_quantity=market.format_quantity(order.filled_quantity),
        filled_quote_quantity=market.format_quote(order.filled_quote_quantity),
        status=order.status,
        reject_reason=order.reason,
        created_at=timestamp(order.created_ns),
        updated_at=timestamp(order.updated_ns),
    )


def my_trades(
    trade: settlement_pb2.SettledTrade, account: AccountId, markets: MarketTable
) -> list[gateway_pb2.MyTrade]:
    """The account's side(s) of a trade: two when it traded with itself."""
    market = markets.market(trade.symbol)
    taker_side = Side(trade.taker_side)
    sides = []
    if trade.maker_account_id == account:
        sides.append((True, trade.maker_order_id, trade.maker_fee))
    if trade.taker_account_id == account:
        sides.append((False, trade.taker_order_id, trade.taker_fee))
    mine = []
    for maker, order_id, fee in sides:
        side = taker_side if not maker else (Side.SELL if taker_side is Side.BUY else Side.BUY)
        fee_asset = market.base if side is Side.BUY else market.quote
        mine.append(
            gateway_pb2.MyTrade(
                symbol=trade.symbol,
                trade_id=trade.trade_id,
                order_id=order_id,
                side=int(side),  # type: ignore[arg-type]  # same numbers as the proto enum
                price=market.format_price(trade.price),
                quantity=market.format_quantity(trade.quantity),
                quote_quantity=market.format_quote(trade.quote_quantity),
                fee=amounts.format_atoms(fee, fee_asset.scale),
                fee_asset=fee_asset.code,
                maker=maker,
                time=timestamp(trade.timestamp_ns),
            )
        )
    return mine


def public_trade(trade: settlement_pb2.SettledTrade, market: Market) -> gateway_pb2.PublicTrade:
    """A trade as everyone sees it."""
    return gateway_pb2.PublicTrade(
        symbol=trade.symbol,
        trade_id=trade.trade_id,
        price=market.format_price(trade.price),
        quantity=market.format_quantity(trade.quantity),
        quote_quantity=market.format_quote(trade.quote_quantity),
        taker_side=trade.taker_side,
        time=timestamp(trade.timestamp_ns),
        sequence=trade.sequence,
    )


def balance_to_pb(balance: ubscore_pb2.AccountBalance, asset: AssetSpec) -> gateway_pb2.Balance:
    """One asset of an account, in the asset's units."""
    return gateway_pb2.Balance(
        asset=balance.asset,
        available=amounts.format_atoms(balance.available, asset.scale),
        frozen=amounts.format_atoms(balance.frozen, asset.scale),
    )


def symbol_info(market: Market) -> gateway_pb2.SymbolInfo:
    """A market and its rules."""
    return gateway_pb2.SymbolInfo(
        symbol=market.symbol,
        base_asset=market.base.code,
        quote_asset=market.quote.code,
        tick_size=market.format_price(market.tick_size),
        lot_size=market.format_quantity(market.lot_size),
        min_quantity=market.format_quantity(market.min_quantity),
        min_notional=market.format_quote(market.min_notional),
        maker_fee_bps=market.maker_fee_bps,
        taker_fee_bps=market.taker_fee_bps,
        base_scale=market.base.scale,
        quote_scale=market.quote.scale,
    )


def _levels(
    levels: Iterable[matcher_pb2.BookLevel], market: Market
) -> list[gateway_pb2.PriceLevel]:
    return [
        gateway_pb2.PriceLevel(
            price=market.format_price(level.price),
            quantity=market.format_quantity(level.quantity),
            order_count=level.order_count,
        )
        for level in levels
    ]


def book_to_pb(
    book: matcher_pb2.MatcherGetOrderBookResponse, market: Market
) -> gateway_pb2.GetOrderBookResponse:
    """Aggregated depth, best first."""
    return gateway_pb2.GetOrderBookResponse(
        symbol=book.symbol,
        sequence=book.sequence,
        bids=_levels(book.bids, market),
        asks=_levels(book.asks, market),
    )


def ticker_to_pb(ticker: settlement_pb2.SettledTicker, market: Market) -> gateway_pb2.Ticker:
    """24-hour statistics; the change in percent has two decimals ("0" with no open price)."""
    change = ticker.last_price - ticker.open_price
    percent = (
        (Decimal(change) * 100 / Decimal(ticker.open_price)).quantize(_PERCENT, ROUND_HALF_EVEN)
        if ticker.open_price
        else Decimal(0)
    )
    return gateway_pb2.Ticker(
        symbol=ticker.symbol,
        last_price=market.format_price(ticker.last_price),
        open_price=market.format_price(ticker.open_price),
        high_price=market.format_price(ticker.high_price),
        low_price=market.format_price(ticker.low_price),
        volume=market.format_quantity(ticker.volume),
        quote_volume=market.format_quote(ticker.quote_volume),
        price_change=market.format_price(change),
        price_change_percent=str(percent),
        trade_count=ticker.trade_count,
        open_time=timestamp(ticker.open_time_ns),
        close_time=timestamp(ticker.close_time_ns),
    )


def candle_to_pb(candle: settlement_pb2.SettledCandle, market: Market) -> gateway_pb2.Candle:
    """One OHLCV candle."""
    return gateway_pb2.Candle(
        open_time=timestamp(candle.open_time_ns),
        open=market.format_price(candle.open),
        high=market.format_price(candle.high),
        low=market.format_price(candle.low),
        close=market.format_price(candle.close),
        volume=market.format_quantity(candle.volume),
        quote_volume=market.format_quote(candle.quote_volume),
        trade_count=candle.trade_count,
    )
