"""The values ubscore's core takes and returns: requests, results, configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)

ORDERS_TOPIC: Final = "ordermesh.orders"
"""The core's own NewOrder/CancelOrder commands (key = symbol)."""
LEDGER_TOPIC: Final = "ordermesh.ledger"
"""The core's own deposits and withdrawals (key = account)."""
ENGINE_TOPIC: Final = "ordermesh.engine"
"""The matcher's events: trades and orders done (key = symbol)."""

UINT64_MAX: Final = 2**64 - 1
"""Account and order ids travel as protobuf uint64."""


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """A new order as the gateway decoded it, amounts already in atoms.

    The caller has checked that the enums are present; the core checks everything else.
    """

    account_id: AccountId
    symbol: Symbol
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """Quote atoms per whole base unit; LIMIT only, 0 for MARKET."""
    quantity: int
    """Base atoms; 0 for a MARKET BUY by quote budget."""
    quote_quantity: int
    """MARKET BUY by quote budget: the quote atoms to spend; else 0."""
    client_order_id: ClientOrderId
    """1-36 of [A-Za-z0-9_-]; unique per account within the dedup window."""
    post_only: bool
    self_trade_prevention: SelfTradePrevention


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `UBSCore.reserve` did: the command to log, and what it froze."""

    order: NewOrder
    """The command to publish to ordermesh.orders (for a duplicate: the original, already sent)."""
    duplicate: bool
    """True when (account, client_order_id) was seen before; nothing changed this time."""
    reserved_asset: Asset
    """The asset frozen: quote for a BUY, base for a SELL."""
    reserved_amount: int
    """Atoms frozen when the order was first reserved."""


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of one account, in atoms."""

    asset: Asset
    available: int
    """Free to spend, withdraw or reserve."""
    frozen: int
    """Reserved by open orders."""


@dataclass(frozen=True, slots=True)
class Funding:
    """What `UBSCore.deposit` or `UBSCore.withdraw` did."""

    event: LedgerEvent
    """The event to publish to ordermesh.ledger (for a duplicate: the original, already sent)."""
    duplicate: bool
    """True when the reference_id was seen before with the same request; nothing changed."""
    balance: Balance
    """The account's balance of the asset now."""


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order whose reservation is still (partly) frozen: the matcher has not finished it."""

    order: NewOrder
    reserved_asset: Asset
    remaining: int
    """Atoms of the reservation not yet spent by trades nor released."""


@dataclass(frozen=True, slots=True)
class UBSCoreConfig:
    """How one ubscore instance is set up; a snapshot only restores under the same values."""

    shard_index: int = 0
    """This instance's shard: it owns the accounts with account_id % shard_count == index."""
    shard_count: int = 1
    """How many shards split the accounts (DESIGN §6)."""
    order_window: int = 1_000
    """Per account, how many of the most recent client_order_ids are remembered for dedup,
    on top of those of open orders, which are always remembered."""
    funding_window: int = 1_000
    """Per account, how many of the most recent funding reference_ids are remembered."""

    def __post_init__(self) -> None:
        if not 0 < self.shard_count <= 1 << 16:
            raise ValueError(f"shard_count must be 1..65536, was {self.shard_count}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"shard_index must be 0..{self.shard_count - 1}, was {self.shard_index}"
            )
        for name in ("order_window", "funding_window"):
            size = getattr(self, name)
            if not 1 <= size <= 1 << 20:
                raise ValueError(f"{name} must be 1..{1 << 20}, was {size}")
