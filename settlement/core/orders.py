"""Orders' current state, merged from ordermesh.orders and ordermesh.engine.

A NewOrder (orders topic) and the matcher's answers (engine topic) arrive in any relative
order, so every change here commutes with the other topic's: static fields are filled
where still unknown and never overwritten, the status only moves up the precedence
PENDING_NEW < NEW < PARTIALLY_FILLED < terminal, fills add up until the order is done,
and OrderDone's filled totals then stand. Within one topic, an order's records keep their
log order (one symbol, one partition), which the rules below rely on:

- OrderAccepted before that order's TradeExecuted and OrderDone;
- an OrderDone(REJECTED, DUPLICATE_ORDER_ID) names an order_id the matcher already had
  live (its OrderAccepted came first): it refused a second command, not that order, and
  changes nothing. Without an OrderAccepted it is the order's own rejection.

What cannot happen in a consistent log raises `OrderConflictError`: a second OrderAccepted
or a second end for one order, or an engine event that names another account or symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ordermesh.events import (
    CancelRejected,
    EngineEvent,
    NewOrder,
    OrderAccepted,
    OrderDone,
    TradeExecuted,
)
from ordermesh.model import (
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

OPEN_STATUSES: Final = (OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
"""An order in one of these is still live (or about to be)."""

OrderChange = NewOrder | EngineEvent
"""What moves an order: a command from ordermesh.orders or an event from ordermesh.engine."""


class OrderConflictError(ValueError):
    """Two records about one order that cannot both be true: the log is inconsistent."""


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order as the orders table holds it; static fields are None until known."""

    order_id: int
    symbol: str
    account_id: int
    client_order_id: str | None
    side: Side | None
    order_type: OrderType | None
    time_in_force: TimeInForce | None
    price: int | None
    quantity: int | None
    quote_budget: int | None
    post_only: bool | None
    """Only the NewOrder carries it."""
    self_trade_prevention: SelfTradePrevention | None
    """Only the NewOrder carries it."""
    status: OrderStatus
    reason: RejectReason
    filled_quantity: int
    filled_quote_quantity: int
    accepted: bool
    """The matcher's OrderAccepted for it has been applied."""
    created_ns: int
    """The earliest timestamp of its records (the command's)."""
    updated_ns: int
    """The latest timestamp of its records."""

    @property
    def terminal(self) -> bool:
        """Filled, canceled, expired or rejected."""
        return self.status not in OPEN_STATUSES


_STATIC: Final = (
    "client_order_id", "side", "order_type", "time_in_force", "price", "quantity",
    "quote_budget",
)  # fmt: skip
_FIELDS: Final = tuple(OrderRow.__dataclass_fields__)


@dataclass(slots=True)
class _Draft:
    """An OrderRow being changed in place while a batch is folded (cheaper than copies)."""

    order_id: int
    symbol: str
    account_id: int
    client_order_id: str | None
    side: Side | None
    order_type: OrderType | None
    time_in_force: TimeInForce | None
    price: int | None
    quantity: int | None
    quote_budget: int | None
    post_only: bool | None
    self_trade_prevention: SelfTradePrevention | None
    status: OrderStatus
    reason: RejectReason
    filled_quantity: int
    filled_quote_quantity: int
    accepted: bool
    created_ns: int
    updated_ns: int

    @classmethod
    def blank(cls, order_id: int, symbol: str, account_id: int, timestamp_ns: int) -> _Draft:
        return cls(
            order_id, symbol, account_id, None, None, None, None, None, None, None, None, None,
            OrderStatus.PENDING_NEW, RejectReason.UNSPECIFIED, 0, 0, False, timestamp_ns,
            timestamp_ns,
        )  # fmt: skip

    @classmethod
    def of(cls, row: OrderRow) -> _Draft:
        return cls(*[getattr(row, name) for name in _FIELDS])

    def row(self) -> OrderRow:
        return OrderRow(*[getattr(self, name) for name in _FIELDS])

    def fill_statics(self, body: NewOrder | OrderAccepted) -> None:
        """Set the static fields still unknown; never overwrite a known one."""
        for name in _STATIC:
            if getattr(self, name) is None:
                setattr(self, name, getattr(body, name))

    def touch(self, timestamp_ns: int) -> None:
        """An engine event at `timestamp_ns` changed the order."""
        self.created_ns = min(self.created_ns, timestamp_ns)
        self.updated_ns = max(self.updated_ns, timestamp_ns)

    def check_owner(self, symbol: str, account_id: int, what: str) -> None:
        if (self.symbol, self.account_id) != (symbol, account_id):
            raise OrderConflictError(
                f"order {self.order_id}: {what} names account {account_id} on {symbol}, "
                f"but the order is account {self.account_id}'s on {self.symbol}"
            )


def _new_order(draft: _Draft | None, command: NewOrder) -> _Draft:
    """Fill the static fields the command carries (a repeated command changes nothing).

    The command's time is the order's creation time; it never counts as an update (a
    duplicate command, refused by the matcher, is no change of the order).
    """
    if draft is None:
        draft = _Draft.blank(
            command.order_id, command.symbol, command.account_id, command.timestamp_ns
        )
    draft.created_ns = min(draft.created_ns, command.timestamp_ns)
    draft.fill_statics(command)
    if draft.post_only is None:
        draft.post_only = command.post_only
    if draft.self_trade_prevention is None:
        draft.self_trade_prevention = command.self_trade_prevention
    return draft


def _accepted(draft: _Draft | None, symbol: str, ts: int, body: OrderAccepted) -> _Draft:
    """The matcher took the order in: NEW unless it is already further."""
    if draft is None:
        draft = _Draft.blank(body.order_id, symbol, body.account_id, ts)
    draft.check_owner(symbol, body.account_id, "OrderAccepted")
    if draft.accepted:
        raise OrderConflictError(f"order {draft.order_id} ({symbol}) was accepted twice")
    draft.fill_statics(body)
    draft.touch(ts)
    draft.accepted = True
    draft.status = max(draft.status, OrderStatus.NEW)
    return draft


def _fill(
    draft: _Draft | None, symbol: str, ts: int, order: tuple[int, int], trade: TradeExecuted
) -> _Draft:
    """One side of a trade: `order` is (order_id, account_id) of the maker or the taker."""
    order_id, account_id = order
    if draft is None:
        draft = _Draft.blank(order_id, symbol, account_id, ts)
    draft.check_owner(symbol, account_id, f"trade {trade.trade_id}")
    draft.touch(ts)
    if draft.status in OPEN_STATUSES:  # once done, OrderDone's totals stand
        draft.status = max(draft.status, OrderStatus.PARTIALLY_FILLED)
        draft.filled_quantity += trade.quantity
        draft.filled_quote_quantity += trade.quote_quantity
    return draft


def is_duplicate_rejection(body: OrderDone) -> bool:
    """A refusal of a command whose order_id (or client_order_id) was live already."""
    return body.status == OrderStatus.REJECTED and body.reason == RejectReason.DUPLICATE_ORDER_ID


def _done(draft: _Draft | None, symbol: str, ts: int, body: OrderDone) -> _Draft:
    """The order ended: its terminal status, reason and filled totals."""
    if draft is not None and draft.accepted and is_duplicate_rejection(body):
        return draft  # the matcher refused a second command with this live order's id
    if draft is None:
        draft = _Draft.blank(body.order_id, symbol, body.account_id, ts)
    draft.check_owner(symbol, body.account_id, f"OrderDone({body.status.name})")
    if draft.status not in OPEN_STATUSES:
        raise OrderConflictError(
            f"order {draft.order_id} ({symbol}) ended twice: {draft.status.name}, then "
            f"{body.status.name}"
        )
    if draft.client_order_id is None:
        draft.client_order_id = body.client_order_id
    draft.touch(ts)
    draft.status = body.status
    draft.reason = body.reason
    draft.filled_quantity = body.filled_quantity
    draft.filled_quote_quantity = body.filled_quote_quantity
    return draft


def order_ids(changes: Iterable[OrderChange]) -> set[int]:
    """Every order_id the changes touch (both sides of a trade)."""
    ids: set[int] = set()
    for change in changes:
        if isinstance(change, NewOrder):
            ids.add(change.order_id)
            continue
        body = change.body
        if isinstance(body, TradeExecuted):
            ids.update((body.maker_order_id, body.taker_order_id))
        elif not isinstance(body, CancelRejected):
            ids.add(body.order_id)
    return ids


def fold_orders(
    existing: Mapping[int, OrderRow], changes: Iterable[OrderChange]
) -> dict[int, OrderRow]:
    """Apply `changes` in order on top of `existing`; return the rows that changed.

    Raises:
        OrderConflictError: two records about one order that cannot both be true.
    """
    drafts: dict[int, _Draft] = {}

    def draft(order_id: int) -> _Draft | None:
        found = drafts.get(order_id)
        if found is None and order_id in existing:
            found = drafts[order_id] = _Draft.of(existing[order_id])
        return found

    for change in changes:
        if isinstance(change, NewOrder):
            drafts[change.order_id] = _new_order(draft(change.order_id), change)
            continue
        symbol, ts, body = change.symbol, change.timestamp_ns, change.body
        if isinstance(body, TradeExecuted):
            for order in (
                (body.maker_order_id, body.maker_account_id),
                (body.taker_order_id, body.taker_account_id),
            ):
                drafts[order[0]] = _fill(draft(order[0]), symbol, ts, order, body)
        elif isinstance(body, OrderAccepted):
            drafts[body.order_id] = _accepted(draft(body.order_id), symbol, ts, body)
        elif isinstance(body, OrderDone):
            drafts[body.order_id] = _done(draft(body.order_id), symbol, ts, body)
    rows = {order_id: found.row() for order_id, found in drafts.items()}
    return {order_id: row for order_id, row in rows.items() if existing.get(order_id) != row}
