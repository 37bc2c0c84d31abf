"""A frozen, canonical copy of the core's state, its digest, and the way back to a live state.

Recovery is snapshot + replay of each topic from the offsets the snapshot names (DESIGN §6).
Everything here is sorted, so two cores that applied the same deltas, in whatever
interleaving, give equal snapshots and equal digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum

from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.model import AccountId, Asset, Symbol
from ubscore.core.values import OpenOrder, UBSCoreConfig


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One non-zero holding: an account's available and frozen atoms of one asset."""

    account_id: AccountId
    asset: Asset
    available: int
    frozen: int


@dataclass(frozen=True, slots=True)
class AssetSupply:
    """Deposits minus withdrawals of one asset applied by this core."""

    asset: Asset
    amount: int


@dataclass(frozen=True, slots=True)
class TopicOffset:
    """The last offset applied from one partition of one topic."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SymbolSequence:
    """The last engine sequence applied for one symbol."""

    symbol: Symbol
    sequence: int


@dataclass(frozen=True, slots=True)
class UBSCoreSnapshot:
    """The whole state of a core between two deltas; restore it with `UBSCore.restore`."""

    config: UBSCoreConfig
    """Shard and window sizes the state was built with."""
    next_order_counter: int
    """The next order_id is next_order_counter * shard_count + shard_index."""
    balances: tuple[AccountBalance, ...]
    """By account, then asset; zero holdings left out."""
    open_orders: tuple[OpenOrder, ...]
    """By order_id."""
    recent_orders: tuple[NewOrder, ...]
    """The client_order_id dedup window: by account, then order_id."""
    recent_funding: tuple[LedgerEvent, ...]
    """The reference_id dedup window: by account, then oldest first."""
    supply: tuple[AssetSupply, ...]
    """By asset; zero left out."""
    offsets: tuple[TopicOffset, ...]
    """By topic, then partition."""
    sequences: tuple[SymbolSequence, ...]
    """By symbol."""

    def digest(self) -> bytes:
        """SHA-256 of a canonical encoding: equal states, equal digests."""
        return state_digest(self)


def state_digest(value: object) -> bytes:
    """SHA-256 of the canonical encoding of a tree of dataclasses, tuples and scalars."""
    hasher = hashlib.sha256()
    _feed(hasher.update, value)
    return hasher.digest()


def _feed(update: Callable[[bytes], object], value: object) -> None:
    # Every item is tagged and every variable-length item is length-prefixed, so no two
    # different trees share an encoding.
    if isinstance(value, bool):
        update(b"T" if value else b"F")
    elif isinstance(value, Enum):
        update(b"e%s:%d;" % (type(value).__name__.encode(), value.value))
    elif isinstance(value, int):
        update(b"i%d;" % value)
    elif isinstance(value, str):
        data = value.encode()
        update(b"s%d:%s" % (len(data), data))
    elif isinstance(value, bytes):
        update(b"b%d:%s" % (len(value), value))
    elif isinstance(value, tuple):
        update(b"t%d:" % len(value))
        for item in value:
            _feed(update, item)
    elif is_dataclass(value) and not isinstance(value, type):
        update(b"d%s:" % type(value).__name__.encode())
        for field in fields(value):
            _feed(update, getattr(value, field.name))
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")
