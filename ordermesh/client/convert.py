"""Between the SDK's types and the gateway's protobuf messages; nothing else.

Amounts travel as decimal strings. Going out, a Decimal, str or int is written as a plain
decimal string (never in exponent form) and a float is refused: binary floats cannot hold
most decimal prices exactly. Coming back, every string becomes a Decimal, as sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final, cast

from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.client import types as t
from ordermesh.model import RejectReason
from ordermesh.v1 import common_pb2

Amount = Decimal | str | int
"""What an amount argument accepts."""

_INTERVALS: Final[Mapping[str, int]] = {
    "1m": common_pb2.CANDLE_INTERVAL_1M,
    "5m": common_pb2.CANDLE_INTERVAL_5M,
    "1h": common_pb2.CANDLE_INTERVAL_1H,
    "1d": common_pb2.CANDLE_INTERVAL_1D,
}


def amount_text(value: object, name: str) -> str:
    """`value` as the decimal string the gateway reads.

    Args:
        value: a Decimal, a str (sent as given, the gateway checks it) or an int.
        name: the argument's name, for the message.

    Raises:
        TypeError: a float (or anything else that is not an amount).
    """
    if isinstance(value, float):
        raise TypeError(
            f"{name} must be a Decimal, str or int, not float ({value!r}): a binary float"
            f" cannot hold most decimal amounts exactly; pass Decimal({str(value)!r}) or"
            f" {str(value)!r}"
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"{name} must be a Decimal, str or int, was {type(value).__name__}")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def optional_amount(value: object, name: str) -> str:
    """`amount_text`, or "" for None (the proto's "not given")."""
    return "" if value is None else amount_text(value, name)


def decimal(text: str) -> Decimal:
    """A decimal string from the gateway as a Decimal.

    Raises:
        ValueError: the text is not a decimal number.
    """
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"the gateway sent {text!r} where a decimal number belongs") from None


def optional_decimal(text: str) -> Decimal | None:
    """None for "" (a field that does not apply), else `decimal`."""
    return decimal(text) if text else None


def datetime_of(stamp: Timestamp) -> datetime:
    """An aware UTC datetime of a Timestamp (microsecond precision)."""
    return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)


def optional_datetime(stamp: Timestamp) -> datetime | None:
    """None for the zero Timestamp (not set), else `datetime_of`."""
    return None if stamp.seconds == 0 and stamp.nanos == 0 else datetime_of(stamp)


def timestamp_of(moment: datetime, name: str) -> Timestamp:
    """A Timestamp of an aware datetime.

    Raises:
        ValueError: a naive datetime (its time zone would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (e.g. tzinfo=UTC), was {moment}")
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def new_client_order_id() -> str:
    """A fresh client_order_id: 32 hex digits (the contract allows 1-36 of [A-Za-z0-9_-])."""
    return uuid.uuid4().hex


def new_reference_id() -> str:
    """A fresh funding reference_id: 32 hex digits."""
    return uuid.uuid4().hex


# --- enums -------------------------------------------------------------------------------


def side_number(value: str) -> common_pb2.Side.ValueType:
    """SIDE_BUY or SIDE_SELL for "BUY" or "SELL"."""
    return common_pb2.Side.ValueType(
        _number(common_pb2.Side, "SIDE_", ("BUY", "SELL"), value, "side")
    )


def order_type_number(value: str) -> common_pb2.OrderType.ValueType:
    """The OrderType number of "LIMIT" or "MARKET"."""
    return common_pb2.OrderType.ValueType(
        _number(common_pb2.OrderType, "ORDER_TYPE_", ("LIMIT", "MARKET"), value, "order_type")
    )


def time_in_force_number(value: str | None) -> common_pb2.TimeInForce.ValueType:
    """The TimeInForce number of "GTC", "IOC" or "FOK"; UNSPECIFIED for None."""
    if value is None:
        return common_pb2.TIME_IN_FORCE_UNSPECIFIED
    allowed = ("GTC", "IOC", "FOK")
    return common_pb2.TimeInForce.ValueType(
        _number(common_pb2.TimeInForce, "TIME_IN_FORCE_", allowed, value, "time_in_force")
    )


def self_trade_prevention_number(value: str | None) -> common_pb2.SelfTradePrevention.ValueType:
    """The SelfTradePrevention number of a mode name; UNSPECIFIED for None."""
    if value is None:
        return common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    allowed = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
    prefix = "SELF_TRADE_PREVENTION_"
    return common_pb2.SelfTradePrevention.ValueType(
        _number(common_pb2.SelfTradePrevention, prefix, allowed, value, "self_trade_prevention")
    )


def response_type_number(wait: str) -> common_pb2.ResponseType.ValueType:
    """RESPONSE_TYPE_ACK for "ack", RESPONSE_TYPE_RESULT for "result"."""
    if wait == "ack":
        return common_pb2.RESPONSE_TYPE_ACK
    if wait == "result":
        return common_pb2.RESPONSE_TYPE_RESULT
    raise ValueError(f"wait must be 'ack' or 'result', was {wait!r}")


def interval_number(interval: str) -> common_pb2.CandleInterval.ValueType:
    """The CandleInterval number of "1m", "5m", "1h" or "1d"."""
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(_INTERVALS)}, was {interval!r}")
    return common_pb2.CandleInterval.ValueType(_INTERVALS[interval])


def _number(wrapper: object, prefix: str, allowed: tuple[str, ...], value: str, name: str) -> int:
    if not isinstance(value, str) or value.upper() not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, was {value!r}")
    number: int = wrapper.Value(f"{prefix}{value.upper()}")  # type: ignore[attr-defined]
    return number


def _name(wrapper: object, prefix: str, number: int) -> str | None:
    """The enum name without `prefix`, None for UNSPECIFIED (0) or a number not known."""
    if number == 0:
        return None
    try:
        full: str = wrapper.Name(number)  # type: ignore[attr-defined]
    except ValueError:
        return None
    return full.removeprefix(prefix)


def _required(name: str | None, what: str, number: int) -> str:
    if name is None:
        raise ValueError(f"the gateway sent {what} {number}, which this SDK does not know")
    return name


def side_name(number: int) -> t.Side:
    """The side's name: BUY or SELL."""
    name = _required(_name(common_pb2.Side, "SIDE_", number), "side", number)
    return cast(t.Side, name)


def order_type_name(number: int) -> t.OrderType:
    """The order type's name: LIMIT or MARKET."""
    name = _name(common_pb2.OrderType, "ORDER_TYPE_", number)
    return cast(t.OrderType, _required(name, "order type", number))


def status_name(number: int) -> t.OrderStatus | None:
    """The status name, None for UNSPECIFIED."""
    return cast(t.OrderStatus | None, _name(common_pb2.OrderStatus, "ORDER_STATUS_", number))


def time_in_force_name(number: int) -> t.TimeInForce | None:
    """The time in force's name (GTC, IOC, FOK), or None for UNSPECIFIED."""
    return cast(t.TimeInForce | None, _name(common_pb2.TimeInForce, "TIME_IN_FORCE_", number))


def self_trade_prevention_name(number: int) -> t.SelfTradePrevention | None:
    """The mode name, or None for UNSPECIFIED."""
    name = _name(common_pb2.SelfTradePrevention, "SELF_TRADE_PREVENTION_", number)
    return cast(t.SelfTradePrevention | None, name)


def reason_name(number: int) -> str | None:
    """The RejectReason name ("FOK_NOT_FILLABLE"); None for UNSPECIFIED."""
    if number == 0:
        return None
    try:
        return RejectReason(number).name
    except ValueError:
        return f"REJECT_REASON_{number}"
