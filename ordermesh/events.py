"""Commands and events of the log, as the pure cores see them (no protobuf here).

ubscore's core emits the commands (`NewOrder`, `CancelOrder` -> ordermesh.orders) and ledger
events (`LedgerEvent` -> ordermesh.ledger); the matcher's core turns commands into
`EngineEvent`s (-> ordermesh.engine), which ubscore and settlement apply. `ordermesh.codec`
maps each of these to its protobuf message and back, field for field.

Amounts are int atoms; prices are quote atoms per whole base unit; times are Unix ns.

Each class is a frozen, slotted dataclass with its `__init__` written out (the one
`@dataclass` would generate: one `object.__setattr__` per field, in field order) and a
`__reduce__` that copies and pickles it through that constructor. Interpreted, both behave
and cost exactly as the generated ones. They are for the optional mypyc build
(scripts/build_native.py), where these classes are native: the written-out `__init__`
compiles to direct stores (a generated one would stay an interpreted function, slower than
no compilation at all), and a frozen native class cannot be restored field by field. A new
field goes into `__init__` too, in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        symbol: Symbol,
        order_id: OrderId,
        account_id: AccountId,
        client_order_id: ClientOrderId,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        quote_budget: int,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
        timestamp_ns: int,
    ) -> None:
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "order_type", order_type)
        object.__setattr__(self, "time_in_force", time_in_force)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "quote_budget", quote_budget)
        object.__setattr__(self, "post_only", post_only)
        object.__setattr__(self, "self_trade_prevention", self_trade_prevention)
        object.__setattr__(self, "timestamp_ns", timestamp_ns)

    def __reduce__(self) -> tuple[type[NewOrder], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Take an order off the book: by order_id when non-zero, else by client_order_id."""

    symbol: Symbol
    account_id: AccountId
    order_id: OrderId
    client_order_id: ClientOrderId
    timestamp_ns: int

    def __init__(
        self,
        symbol: Symbol,
        account_id: AccountId,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        timestamp_ns: int,
    ) -> None:
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "timestamp_ns", timestamp_ns)

    def __reduce__(self) -> tuple[type[CancelOrder], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        order_id: OrderId,
        account_id: AccountId,
        client_order_id: ClientOrderId,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        quote_budget: int,
    ) -> None:
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "order_type", order_type)
        object.__setattr__(self, "time_in_force", time_in_force)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "quote_budget", quote_budget)

    def __reduce__(self) -> tuple[type[OrderAccepted], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        trade_id: TradeId,
        maker_order_id: OrderId,
        taker_order_id: OrderId,
        maker_account_id: AccountId,
        taker_account_id: AccountId,
        taker_side: Side,
        price: int,
        quantity: int,
        quote_quantity: int,
        maker_fee: int,
        taker_fee: int,
    ) -> None:
        object.__setattr__(self, "trade_id", trade_id)
        object.__setattr__(self, "maker_order_id", maker_order_id)
        object.__setattr__(self, "taker_order_id", taker_order_id)
        object.__setattr__(self, "maker_account_id", maker_account_id)
        object.__setattr__(self, "taker_account_id", taker_account_id)
        object.__setattr__(self, "taker_side", taker_side)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "quote_quantity", quote_quantity)
        object.__setattr__(self, "maker_fee", maker_fee)
        object.__setattr__(self, "taker_fee", taker_fee)

    def __reduce__(self) -> tuple[type[TradeExecuted], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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
    side: Side
    price: int
    """The order's limit price in price atoms; 0 for a MARKET order. With `side`, where a
    resting order leaves the book, so a reader needs no history to apply the event."""

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        order_id: OrderId,
        account_id: AccountId,
        client_order_id: ClientOrderId,
        status: OrderStatus,
        reason: RejectReason,
        filled_quantity: int,
        remaining_quantity: int,
        filled_quote_quantity: int,
        side: Side,
        price: int,
    ) -> None:
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "filled_quantity", filled_quantity)
        object.__setattr__(self, "remaining_quantity", remaining_quantity)
        object.__setattr__(self, "filled_quote_quantity", filled_quote_quantity)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "price", price)

    def __reduce__(self) -> tuple[type[OrderDone], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """A cancel that could not be carried out; no balance moves."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    reason: RejectReason

    def __init__(
        self,
        order_id: OrderId,
        account_id: AccountId,
        client_order_id: ClientOrderId,
        reason: RejectReason,
    ) -> None:
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "reason", reason)

    def __reduce__(self) -> tuple[type[CancelRejected], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        symbol: Symbol,
        sequence: int,
        input_offset: int,
        timestamp_ns: int,
        hash: bytes,
        body: EventBody,
    ) -> None:
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "sequence", sequence)
        object.__setattr__(self, "input_offset", input_offset)
        object.__setattr__(self, "timestamp_ns", timestamp_ns)
        object.__setattr__(self, "hash", hash)
        object.__setattr__(self, "body", body)

    def __reduce__(self) -> tuple[type[EngineEvent], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))


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

    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        account_id: AccountId,
        asset: Asset,
        kind: LedgerEntryKind,
        amount: int,
        reference_id: str,
        timestamp_ns: int,
    ) -> None:
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "asset", asset)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "reference_id", reference_id)
        object.__setattr__(self, "timestamp_ns", timestamp_ns)

    def __reduce__(self) -> tuple[type[LedgerEvent], tuple[object, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in fields(self))
