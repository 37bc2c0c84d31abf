"""Commands and events of the log, as the pure cores see them (no protobuf here).

ubscore's core emits the commands (`NewOrder`, `CancelOrder` -> ordermesh.orders) and ledger
events (`LedgerEvent` -> ordermesh.ledger); the matcher's core turns commands into
`EngineEvent`s (-> ordermesh.engine), which ubscore and settlement apply. `ordermesh.codec`
maps each of these to its protobuf message and back, field for field.

Amounts are int atoms; prices are quote atoms per whole base unit; times are Unix ns.
"""

from __future__ import annotations

from dataclasses import dataclass

from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)

# -- commands: ordermesh.orders -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A new order whose funds ubscore has frozen; the matcher's only way in for an order."""

    symbol: Symbol
    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """Quote atoms per whole base unit; 0 for MARKET."""
    quantity: int
    """Base atoms; 0 for a MARKET BUY by quote budget."""
    quote_budget: int
    """MARKET BUY only: the most quote atoms it may spend (what ubscore froze); else 0."""
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    timestamp_ns: int
    """Stamped by ubscore."""


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Take an order off the book: by order_id when non-zero, else by client_order_id."""

    symbol: Symbol
    account_id: AccountId
    order_id: OrderId
    client_order_id: ClientOrderId
    timestamp_ns: int


OrderCommand = NewOrder | CancelOrder

# -- engine events: ordermesh.engine ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """The matcher took the order in; it rests, or is about to match."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    quote_budget: int


@dataclass(frozen=True, slots=True)
class TradeExecuted:
    """A fill at the maker's price.

    Each fee is in the asset its payer receives (the buyer's in base atoms, the seller's in
    quote atoms) and goes to the fee account.
    """

    trade_id: TradeId
    maker_order_id: OrderId
    taker_order_id: OrderId
    maker_account_id: AccountId
    taker_account_id: AccountId
    taker_side: Side
    price: int
    quantity: int
    quote_quantity: int
    """price x quantity in quote atoms, exact."""
    maker_fee: int
    taker_fee: int


@dataclass(frozen=True, slots=True)
class OrderDone:
    """The order left the matcher for good; ubscore releases the rest of its reservation."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    status: OrderStatus
    """FILLED, CANCELED, EXPIRED or REJECTED."""
    reason: RejectReason
    filled_quantity: int
    remaining_quantity: int
    filled_quote_quantity: int


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """A cancel that could not be carried out; no balance moves."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    reason: RejectReason


EventBody = OrderAccepted | TradeExecuted | OrderDone | CancelRejected


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One matcher output, chained per command (see matcher/core/chain.py)."""

    symbol: Symbol
    sequence: int
    """Per symbol, from 1, no gaps."""
    input_offset: int
    """The ordermesh.orders offset of the command this answers."""
    timestamp_ns: int
    """The command's timestamp."""
    hash: bytes
    body: EventBody


# -- funding: ordermesh.ledger ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """Funds entering (DEPOSIT) or leaving (WITHDRAWAL) the system, logged before the ack."""

    account_id: AccountId
    asset: Asset
    kind: LedgerEntryKind
    amount: int
    """Atoms, positive; `kind` gives the direction."""
    reference_id: str
    timestamp_ns: int
