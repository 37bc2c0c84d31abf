"""Matcher snapshots and resting orders: core values <-> protobuf, field for field.

Decoding is strict: bytes that do not parse, an enum value the core does not know, or a
snapshot that is not a consistent book raise `SnapshotCodecError`. The matcher must stop
on it rather than start from a wrong book.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from google.protobuf.message import DecodeError

from matcher.core.snapshot import BookSnapshot, OrderSnapshot
from ordermesh.model import AccountId, ClientOrderId, OrderId, SelfTradePrevention, Side, Symbol
from ordermesh.v1 import matcher_pb2 as pb

_E = TypeVar("_E", bound=IntEnum)


class SnapshotCodecError(ValueError):
    """Snapshot bytes or a message that is not a valid matcher snapshot."""


def order_to_pb(order: OrderSnapshot) -> pb.RestingOrder:
    """The protobuf form of one resting order."""
    return pb.RestingOrder(
        order_id=order.order_id,
        account_id=order.account_id,
        client_order_id=order.client_order_id,
        side=int(order.side),  # type: ignore[arg-type]  # same numbers as the proto enum
        price=order.price,
        quantity=order.quantity,
        remaining_quantity=order.remaining_quantity,
        filled_quote_quantity=order.filled_quote_quantity,
        self_trade_prevention=int(order.self_trade_prevention),  # type: ignore[arg-type]
        timestamp_ns=order.timestamp_ns,
    )


def order_from_pb(message: pb.RestingOrder) -> OrderSnapshot:
    """The core form of one resting order.

    Raises:
        SnapshotCodecError: an enum value the core does not know.
    """
    return OrderSnapshot(
        order_id=OrderId(message.order_id),
        account_id=AccountId(message.account_id),
        client_order_id=ClientOrderId(message.client_order_id),
        side=_enum(Side, message.side, "RestingOrder.side"),
        price=message.price,
        quantity=message.quantity,
        remaining_quantity=message.remaining_quantity,
        filled_quote_quantity=message.filled_quote_quantity,
        self_trade_prevention=_enum(
            SelfTradePrevention, message.self_trade_prevention, "RestingOrder.self_trade_prevention"
        ),
        timestamp_ns=message.timestamp_ns,
    )


def snapshot_to_pb(snapshot: BookSnapshot) -> pb.BookSnapshot:
    """The protobuf form of a book snapshot."""
    return pb.BookSnapshot(
        symbol=snapshot.symbol,
        input_offset=snapshot.input_offset,
        sequence=snapshot.sequence,
        hash=snapshot.hash,
        next_trade_id=snapshot.next_trade_id,
        bids=[order_to_pb(order) for order in snapshot.bids],
        asks=[order_to_pb(order) for order in snapshot.asks],
    )


def snapshot_from_pb(message: pb.BookSnapshot) -> BookSnapshot:
    """The core form of a book snapshot (its consistency is checked on restore).

    Raises:
        SnapshotCodecError: an enum value the core does not know, or a hash not 32 bytes.
    """
    if len(message.hash) != 32:
        raise SnapshotCodecError(f"BookSnapshot.hash must be 32 bytes, was {len(message.hash)}")
    return BookSnapshot(
        symbol=Symbol(message.symbol),
        input_offset=message.input_offset,
        sequence=message.sequence,
        hash=bytes(message.hash),
        next_trade_id=message.next_trade_id,
        bids=tuple(order_from_pb(order) for order in message.bids),
        asks=tuple(order_from_pb(order) for order in message.asks),
    )


def encode_snapshot(snapshot: BookSnapshot) -> bytes:
    """Serialize a snapshot (protobuf ordermesh.v1.BookSnapshot)."""
    return snapshot_to_pb(snapshot).SerializeToString(deterministic=True)


def decode_snapshot(data: bytes) -> BookSnapshot:
    """Parse snapshot bytes written by `encode_snapshot`.

    Raises:
        SnapshotCodecError: the bytes are not a valid BookSnapshot.
    """
    message = pb.BookSnapshot()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise SnapshotCodecError(f"not a BookSnapshot: {e}") from e
    return snapshot_from_pb(message)


def _enum(kind: type[_E], value: int, field: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise SnapshotCodecError(f"{field}: unknown {kind.__name__} {value}") from None
