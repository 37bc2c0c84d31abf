"""ubscore's snapshot <-> protobuf (ordermesh.v1.UBSCoreSnapshot), field for field.

The orders and funding events inside a snapshot are encoded exactly as the log encodes them
(`ordermesh.codec`), so there is one mapping of each. Decoding is strict: bytes that do not
parse, a command that is not a NewOrder, or values the core refuses raise `CodecError`.
"""

from __future__ import annotations

from itertools import groupby

from google.protobuf.message import DecodeError

from ordermesh import codec as log_codec
from ordermesh.codec import CodecError
from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.model import AccountId, Asset, Symbol
from ordermesh.v1 import events_pb2, ubscore_pb2
from ubscore.core import (
    AccountBalance,
    AssetSupply,
    OpenOrder,
    SymbolSequence,
    TopicOffset,
    UBSCoreConfig,
    UBSCoreSnapshot,
)

__all__ = ["CodecError", "decode_snapshot", "encode_snapshot", "snapshot_from_pb", "snapshot_to_pb"]


def encode_snapshot(snapshot: UBSCoreSnapshot) -> bytes:
    """Serialize a snapshot (deterministically: the same snapshot, the same bytes)."""
    return snapshot_to_pb(snapshot).SerializeToString(deterministic=True)


def decode_snapshot(data: bytes) -> UBSCoreSnapshot:
    """Parse snapshot bytes; CodecError if they are not a valid UBSCoreSnapshot."""
    msg = ubscore_pb2.UBSCoreSnapshot()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise CodecError(f"not an ordermesh.v1.UBSCoreSnapshot: {e}") from e
    return snapshot_from_pb(msg)


def snapshot_to_pb(snapshot: UBSCoreSnapshot) -> ubscore_pb2.UBSCoreSnapshot:
    """The protobuf form of a snapshot."""
    config = snapshot.config
    return ubscore_pb2.UBSCoreSnapshot(
        shard_index=config.shard_index,
        shard_count=config.shard_count,
        order_window=config.order_window,
        funding_window=config.funding_window,
        next_order_counter=snapshot.next_order_counter,
        accounts=_accounts_to_pb(snapshot.balances),
        open_orders=[
            ubscore_pb2.UBSCoreOpenOrder(
                order=_order_to_pb(entry.order),
                reserved_asset=entry.reserved_asset,
                remaining=entry.remaining,
            )
            for entry in snapshot.open_orders
        ],
        recent_orders=[_order_to_pb(order) for order in snapshot.recent_orders],
        recent_funding=[
            events_pb2.LedgerEvent.FromString(log_codec.encode_ledger_event(event))
            for event in snapshot.recent_funding
        ],
        supply=[
            ubscore_pb2.UBSCoreAssetSupply(asset=entry.asset, amount=entry.amount)
            for entry in snapshot.supply
        ],
        offsets=[
            ubscore_pb2.UBSCoreTopicOffset(
                topic=entry.topic, partition=entry.partition, offset=entry.offset
            )
            for entry in snapshot.offsets
        ],
        sequences=[
            ubscore_pb2.UBSCoreSymbolSequence(symbol=entry.symbol, sequence=entry.sequence)
            for entry in snapshot.sequences
        ],
    )


def _accounts_to_pb(
    balances: tuple[AccountBalance, ...],
) -> list[ubscore_pb2.UBSCoreAccountSnapshot]:
    return [
        ubscore_pb2.UBSCoreAccountSnapshot(
            account_id=account_id,
            balances=[
                ubscore_pb2.AccountBalance(
                    asset=entry.asset, available=entry.available, frozen=entry.frozen
                )
                for entry in entries
            ],
        )
        for account_id, entries in groupby(balances, key=lambda entry: entry.account_id)
    ]


def snapshot_from_pb(msg: ubscore_pb2.UBSCoreSnapshot) -> UBSCoreSnapshot:
    """The core form of a protobuf snapshot; CodecError if it is not a valid one."""
    try:
        config = UBSCoreConfig(
            shard_index=msg.shard_index,
            shard_count=msg.shard_count,
            order_window=msg.order_window,
            funding_window=msg.funding_window,
        )
    except ValueError as e:
        raise CodecError(f"UBSCoreSnapshot: {e}") from e
    return UBSCoreSnapshot(
        config=config,
        next_order_counter=msg.next_order_counter,
        balances=tuple(
            AccountBalance(AccountId(account.account_id), Asset(b.asset), b.available, b.frozen)
            for account in msg.accounts
            for b in account.balances
        ),
        open_orders=tuple(
            OpenOrder(_order_from_pb(entry.order), Asset(entry.reserved_asset), entry.remaining)
            for entry in msg.open_orders
        ),
        recent_orders=tuple(_order_from_pb(order) for order in msg.recent_orders),
        recent_funding=tuple(_funding_from_pb(event) for event in msg.recent_funding),
        supply=tuple(AssetSupply(Asset(entry.asset), entry.amount) for entry in msg.supply),
        offsets=tuple(
            TopicOffset(entry.topic, entry.partition, entry.offset) for entry in msg.offsets
        ),
        sequences=tuple(
            SymbolSequence(Symbol(entry.symbol), entry.sequence) for entry in msg.sequences
        ),
    )


def _order_to_pb(order: NewOrder) -> events_pb2.OrderCommand:
    return events_pb2.OrderCommand.FromString(log_codec.encode_command(order))


def _order_from_pb(msg: events_pb2.OrderCommand) -> NewOrder:
    command = log_codec.decode_command(msg.SerializeToString())
    if not isinstance(command, NewOrder):
        raise CodecError("UBSCoreSnapshot holds an OrderCommand that is not a NewOrder")
    return command


def _funding_from_pb(msg: events_pb2.LedgerEvent) -> LedgerEvent:
    return log_codec.decode_ledger_event(msg.SerializeToString())
