"""The values ubscore's core takes and returns: requests, results, configuration.

As in ordermesh.events, the per-request classes have their `__init__` written out and every
class copies and pickles through its constructor (`__reduce__`), for the optional mypyc build.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        account_id: AccountId,
        symbol: Symbol,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        quote_quantity: int,
        client_order_id: ClientOrderId,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
    ) -> None:
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "order_type", order_type)
        object.__setattr__(self, "time_in_force", time_in_force)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "quote_quantity", quote_quantity)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "post_only", post_only)
        object.__setattr__(self, "self_trade_prevention", self_trade_prevention)

    def __reduce__(self) -> tuple[type[ReserveRequest], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __init__(
        self,
        order: NewOrder,
        duplicate: bool,
        reserved_asset: Asset,
        reserved_amount: int,
    ) -> None:
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "duplicate", duplicate)
        object.__setattr__(self, "reserved_asset", reserved_asset)
        object.__setattr__(self, "reserved_amount", reserved_amount)

    def __reduce__(self) -> tuple[type[Reservation], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of one account, in atoms."""

    asset: Asset
    available: int
    """Free to spend, withdraw or reserve."""
    frozen: int
    """Reserved by open orders."""

    def __reduce__(self) -> tuple[type[Balance], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class Funding:
    """What `UBSCore.deposit` or `UBSCore.withdraw` did."""

    event: LedgerEvent
    """The event to publish to ordermesh.ledger (for a duplicate: the original, already sent)."""
    duplicate: bool
    """True when the reference_id was seen before with the same request; nothing changed."""
    balance: Balance
    """The account's balance of the asset now."""

    def __reduce__(self) -> tuple[type[Funding], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order whose reservation is still (partly) frozen: the matcher has not finished it."""

    order: NewOrder
    reserved_asset: Asset
    remaining: int
    """Atoms of the reservation not yet spent by trades nor released."""

    def __reduce__(self) -> tuple[type[OpenOrder], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __reduce__(self) -> tuple[type[UBSCoreConfig], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))
