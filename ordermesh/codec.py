"""The log's payloads: core commands and events <-> protobuf bytes, field for field.

Decoding is strict: bytes that do not parse, a missing oneof, or an enum value the core does
not know raise `CodecError`. A consumer must stop on it, never skip the record (DESIGN §11).

`decode_command` and `decode_engine_event` remember the records they decoded last
(`DECODE_CACHE_RECORDS` of each): in one process several readers decode the same record
(ubscore, the gateway's tail and settlement all read ordermesh.engine), and the same bytes give
the same frozen value, so the later readers get the first one's. Only what decoded is
remembered; a bad record raises every time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any, Final, TypeVar

from google.protobuf.message import DecodeError, Message

from ordermesh import events, model
from ordermesh.model import Symbol
from ordermesh.v1 import events_pb2 as pb

_M = TypeVar("_M", bound=Message)


class CodecError(ValueError):
    """A log record that is not a valid ordermesh message."""


_ENUMS: Final[Mapping[str, type[IntEnum]]] = {
    "Side": model.Side,
    "OrderType": model.OrderType,
    "TimeInForce": model.TimeInForce,
    "SelfTradePrevention": model.SelfTradePrevention,
    "OrderStatus": model.OrderStatus,
    "RejectReason": model.RejectReason,
    "LedgerEntryKind": model.LedgerEntryKind,
}


DECODE_CACHE_RECORDS: Final = 8_192
"""How many decoded records of each kind a process remembers (see the module docstring)."""


def _decoder(message: type[Message], core: Callable[..., Any]) -> Callable[..., Any]:
    """Build `pb message (+ extra fields) -> core value`, converting enums by their proto name."""
    plan: list[tuple[str, Mapping[int, IntEnum] | None, str]] = []
    for field in message.DESCRIPTOR.fields:
        enum = field.enum_type
        if enum is None:
            plan.append((field.name, None, ""))
        else:
            plan.append((field.name, model.members(_ENUMS[enum.name]), _ENUMS[enum.name].__name__))

    def decode(msg: Message, **extra: Any) -> Any:
        values = dict(extra)
        for name, members, enum_name in plan:
            value = getattr(msg, name)
            if members is not None:
                member = members.get(value)
                if member is None:
                    raise CodecError(
                        f"{message.DESCRIPTOR.name}.{name}: unknown {enum_name} {value}"
                    )
                value = member
            values[name] = value
        return core(**values)

    return decode


def _encoder(message: type[_M]) -> Callable[[Any], _M]:
    """Build `core value -> pb message`, copying the fields the message declares."""
    names = [field.name for field in message.DESCRIPTOR.fields]

    def encode(value: Any) -> _M:
        return message(**{name: getattr(value, name) for name in names})

    return encode


_BODIES: Final = (
    ("order_accepted", pb.OrderAccepted, events.OrderAccepted),
    ("trade_executed", pb.TradeExecuted, events.TradeExecuted),
    ("order_done", pb.OrderDone, events.OrderDone),
    ("cancel_rejected", pb.CancelRejected, events.CancelRejected),
)
_BODY_ENCODE: Final = {core: (name, _encoder(msg)) for name, msg, core in _BODIES}
_BODY_DECODE: Final = {name: _decoder(msg, core) for name, msg, core in _BODIES}
_NEW_ORDER_ENCODE: Final = _encoder(pb.NewOrder)
_NEW_ORDER_DECODE: Final = _decoder(pb.NewOrder, events.NewOrder)
_CANCEL_ENCODE: Final = _encoder(pb.CancelOrder)
_CANCEL_DECODE: Final = _decoder(pb.CancelOrder, events.CancelOrder)
_LEDGER_ENCODE: Final = _encoder(pb.LedgerEvent)
_LEDGER_DECODE: Final = _decoder(pb.LedgerEvent, events.LedgerEvent)


def _parse(message: type[_M], data: bytes) -> _M:
    msg = message()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise CodecError(f"not a {message.DESCRIPTOR.full_name}: {e}") from e
    return msg


def encode_command(command: events.OrderCommand) -> bytes:
    """Serialize a NewOrder or CancelOrder as an OrderCommand record value."""
    if isinstance(command, events.NewOrder):
        msg = pb.OrderCommand(
            symbol=command.symbol,
            timestamp_ns=command.timestamp_ns,
            new_order=_NEW_ORDER_ENCODE(command),
        )
    else:
        msg = pb.OrderCommand(
            symbol=command.symbol,
            timestamp_ns=command.timestamp_ns,
            cancel_order=_CANCEL_ENCODE(command),
        )
    return msg.SerializeToString()


def decode_command(data: bytes) -> events.OrderCommand:
    """Parse an OrderCommand record value; CodecError if it is not one."""
    if type(data) is bytes:  # hashable: a bytearray or memoryview is decoded afresh
        return _decode_command_cached(data)
    return _decode_command(data)


def _decode_command(data: bytes) -> events.OrderCommand:
    msg = _parse(pb.OrderCommand, data)
    kind = msg.WhichOneof("command")
    envelope = {"symbol": Symbol(msg.symbol), "timestamp_ns": msg.timestamp_ns}
    if kind == "new_order":
        new_order: events.NewOrder = _NEW_ORDER_DECODE(msg.new_order, **envelope)
        return new_order
    if kind == "cancel_order":
        cancel: events.CancelOrder = _CANCEL_DECODE(msg.cancel_order, **envelope)
        return cancel
    raise CodecError("OrderCommand without a command")


_decode_command_cached: Final = functools.lru_cache(maxsize=DECODE_CACHE_RECORDS)(_decode_command)


def engine_event_to_pb(event: events.EngineEvent) -> pb.EngineEvent:
    """The protobuf form of an engine event."""
    name, encode = _BODY_ENCODE[type(event.body)]
    msg = pb.EngineEvent(
        symbol=event.symbol,
        sequence=event.sequence,
        input_offset=event.input_offset,
        timestamp_ns=event.timestamp_ns,
        hash=event.hash,
    )
    getattr(msg, name).CopyFrom(encode(event.body))
    return msg


def encode_engine_event(event: events.EngineEvent) -> bytes:
    """Serialize an engine event as an EngineEvent record value."""
    return engine_event_to_pb(event).SerializeToString()


def engine_event_from_pb(msg: pb.EngineEvent) -> events.EngineEvent:
    """The core form of a protobuf engine event; CodecError if it has no body."""
    kind = msg.WhichOneof("event")
    if kind is None:
        raise CodecError(f"EngineEvent {msg.symbol}#{msg.sequence} without an event")
    return events.EngineEvent(
        symbol=Symbol(msg.symbol),
        sequence=msg.sequence,
        input_offset=msg.input_offset,
        timestamp_ns=msg.timestamp_ns,
        hash=msg.hash,
        body=_BODY_DECODE[kind](getattr(msg, kind)),
    )


def decode_engine_event(data: bytes) -> events.EngineEvent:
    """Parse an EngineEvent record value; CodecError if it is not one."""
    if type(data) is bytes:  # hashable: a bytearray or memoryview is decoded afresh
        return _decode_engine_event_cached(data)
    return _decode_engine_event(data)


def _decode_engine_event(data: bytes) -> events.EngineEvent:
    return engine_event_from_pb(_parse(pb.EngineEvent, data))


_decode_engine_event_cached: Final = functools.lru_cache(maxsize=DECODE_CACHE_RECORDS)(
    _decode_engine_event
)


def encode_ledger_event(event: events.LedgerEvent) -> bytes:
    """Serialize a deposit or withdrawal as a LedgerEvent record value."""
    return _LEDGER_ENCODE(event).SerializeToString()


def decode_ledger_event(data: bytes) -> events.LedgerEvent:
    """Parse a LedgerEvent record value; CodecError if it is not one."""
    ledger: events.LedgerEvent = _LEDGER_DECODE(_parse(pb.LedgerEvent, data))
    return ledger
