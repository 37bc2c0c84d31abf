"""The rows settlement writes and reads: trades, ledger legs, candles, the ticker.

Every amount is int atoms and every time Unix nanoseconds, as in the log. Ids travel as
uint64 in the contract but PostgreSQL has no unsigned integer: `to_signed` / `to_unsigned`
store the upper half of the uint64 range as negative BIGINTs (two's complement), so every
id round-trips exactly and the ids the system actually hands out (far below 2**63) read
as themselves in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ordermesh.model import LedgerEntryKind, Side

_TWO_64: Final = 2**64
_TWO_63: Final = 2**63


def to_signed(value: int) -> int:
    """The BIGINT that stores uint64 `value`.

    Raises:
        ValueError: `value` is not within 0..2**64 - 1.
    """
    if not 0 <= value < _TWO_64:
        raise ValueError(f"id must be within 0..{_TWO_64 - 1}, was {value}")
    return value - _TWO_64 if value >= _TWO_63 else value


def to_unsigned(value: int) -> int:
    """The uint64 a BIGINT written by `to_signed` stands for."""
    return value + _TWO_64 if value < 0 else value


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One fill, as the trades table holds it (ids unsigned here)."""

    symbol: str
    trade_id: int
    sequence: int
    """The engine event's per-symbol sequence number."""
    maker_order_id: int
    taker_order_id: int
    maker_account_id: int
    taker_account_id: int
    taker_side: Side
    price: int
    quantity: int
    quote_quantity: int
    maker_fee: int
    taker_fee: int
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class LedgerLeg:
    """One leg of a double entry: signed atoms of one asset for one account."""

    account_id: int
    asset: str
    kind: LedgerEntryKind
    amount: int
    """Credit positive, debit negative; never zero."""
    reference: str
    """"SYMBOL:trade_id" for a trade, the funding reference_id for a deposit or withdrawal."""
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A stored ledger leg with the id PostgreSQL gave it (entries are append-only)."""

    entry_id: int
    account_id: int
    asset: str
    kind: LedgerEntryKind
    amount: int
    reference: str
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class Candle:
    """Open, high, low, close and volumes of one symbol over one interval."""

    symbol: str
    open_time_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    """Base atoms traded."""
    quote_volume: int
    """Quote atoms traded."""
    trade_count: int


@dataclass(frozen=True, slots=True)
class Ticker:
    """One symbol's rolling 24 hours (prices all 0 before its first trade)."""

    symbol: str
    last_price: int
    """The latest trade's price, even when it is older than the window."""
    open_price: int
    high_price: int
    low_price: int
    volume: int
    quote_volume: int
    trade_count: int
    open_time_ns: int
    close_time_ns: int
