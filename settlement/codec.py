"""Settlement's rows <-> the protobuf messages of ordermesh.v1.Settlement, nothing else."""

from __future__ import annotations

from typing import Final

from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import common_pb2, settlement_pb2
from settlement.core import Candle, CandleInterval, LedgerEntry, OrderRow, Ticker, TradeRow

_INT64_MAX: Final = 2**63 - 1


def int64(value: int, field: str) -> int:
    """`value` if it fits the contract's int64.

    Raises:
        OrdermeshError: AMOUNT_OVERFLOW naming `field` (an aggregate too large to carry).
    """
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise OrdermeshError(
            RejectReason.AMOUNT_OVERFLOW,
            f"{field} is {value} atoms, more than an int64 carries; ask for a narrower interval",
            field=field,
        )
    return value


def interval_from_pb(value: int) -> CandleInterval:
    """The core's CandleInterval for a proto CandleInterval number.

    Raises:
        OrdermeshError: INVALID_ARGUMENT naming interval for UNSPECIFIED or an unknown number.
    """
    if value:
        try:
            return CandleInterval(value)
        except ValueError:
            pass
    allowed = ", ".join(name for name, number in common_pb2.CandleInterval.items() if number)
    shown = (
        common_pb2.CandleInterval.Name(value)  # type: ignore[arg-type]
        if value in common_pb2.CandleInterval.values()
        else str(value)
    )
    raise OrdermeshError(
        RejectReason.INVALID_ARGUMENT,
        f"interval must be one of {allowed}, was {shown}",
        field="interval",
    )


def trade_to_pb(row: TradeRow) -> settlement_pb2.SettledTrade:
    """The gRPC form of a trade."""
    return settlement_pb2.SettledTrade(
        symbol=row.symbol,
        trade_id=row.trade_id,
        sequence=row.sequence,
        maker_order_id=row.maker_order_id,
        taker_order_id=row.taker_order_id,
        maker_account_id=row.maker_account_id,
        taker_account_id=row.taker_account_id,
        taker_side=row.taker_side.value,  # type: ignore[arg-type]
        price=row.price,
        quantity=row.quantity,
        quote_quantity=row.quote_quantity,
        maker_fee=row.maker_fee,
        taker_fee=row.taker_fee,
        timestamp_ns=row.timestamp_ns,
    )


def order_to_pb(row: OrderRow) -> settlement_pb2.SettledOrder:
    """The gRPC form of an order; a static field not known yet is 0 (UNSPECIFIED, "")."""
    return settlement_pb2.SettledOrder(
        order_id=row.order_id,
        account_id=row.account_id,
        client_order_id=row.client_order_id or "",
        symbol=row.symbol,
        side=row.side or 0,  # type: ignore[arg-type]
        order_type=row.order_type or 0,  # type: ignore[arg-type]
        time_in_force=row.time_in_force or 0,  # type: ignore[arg-type]
        price=row.price or 0,
        quantity=row.quantity or 0,
        quote_budget=row.quote_budget or 0,
        filled_quantity=row.filled_quantity,
        filled_quote_quantity=row.filled_quote_quantity,
        status=row.status.value,  # type: ignore[arg-type]
        reason=row.reason.value,  # type: ignore[arg-type]
        created_ns=row.created_ns,
        updated_ns=row.updated_ns,
    )


def ledger_to_pb(entry: LedgerEntry) -> settlement_pb2.LedgerEntry:
    """The gRPC form of a ledger leg."""
    return settlement_pb2.LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        asset=entry.asset,
        kind=entry.kind.value,  # type: ignore[arg-type]
        amount=entry.amount,
        reference=entry.reference,
        timestamp_ns=entry.timestamp_ns,
    )


def candle_to_pb(candle: Candle) -> settlement_pb2.SettledCandle:
    """The gRPC form of a candle.

    Raises:
        OrdermeshError: AMOUNT_OVERFLOW when a volume does not fit an int64.
    """
    return settlement_pb2.SettledCandle(
        open_time_ns=candle.open_time_ns,
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=int64(candle.volume, "volume"),
        quote_volume=int64(candle.quote_volume, "quote_volume"),
        trade_count=candle.trade_count,
    )


def ticker_to_pb(ticker: Ticker) -> settlement_pb2.SettledTicker:
    """The gRPC form of a 24-hour ticker.

    Raises:
        OrdermeshError: AMOUNT_OVERFLOW when a volume does not fit an int64.
    """
    return settlement_pb2.SettledTicker(
        symbol=ticker.symbol,
        last_price=ticker.last_price,
        open_price=ticker.open_price,
        high_price=ticker.high_price,
        low_price=ticker.low_price,
        volume=int64(ticker.volume, "volume"),
        quote_volume=int64(ticker.quote_volume, "quote_volume"),
        trade_count=ticker.trade_count,
        open_time_ns=ticker.open_time_ns,
        close_time_ns=ticker.close_time_ns,
    )
