"""The engine event hash chain: canonical event bytes and one sha256 link per command.

The events a command causes are linked as one group::

    hash(k) = sha256(hash(k - 1) || event_bytes(e1) || ... || event_bytes(en))
    hash(0) = 32 zero bytes

where e1..en are all the events of the k-th applied command, in order; each of them
carries ``hash(k)``. A command always causes at least one event, and its events are the
consecutive sequence numbers that share its input_offset, so the groups are unambiguous;
`matcher.core.verify` checks them exactly, one event at a time (an event closes its group
when the digest of the group so far equals the hash it carries).

``event_bytes`` is this canonical encoding (not protobuf, whose bytes are not canonical),
big-endian, no padding::

    kind            u8    1 OrderAccepted, 2 TradeExecuted, 3 OrderDone, 4 CancelRejected
    symbol_length   u16   then the symbol, UTF-8
    sequence        u64
    input_offset    i64
    timestamp_ns    i64
    body, by kind:
      1 OrderAccepted   order_id u64, account_id u64, side u8, order_type u8,
                        time_in_force u8, price i64, quantity i64, quote_budget i64,
                        client_order_id_length u32, then client_order_id UTF-8
      2 TradeExecuted   trade_id u64, maker_order_id u64, taker_order_id u64,
                        maker_account_id u64, taker_account_id u64, taker_side u8,
                        price i64, quantity i64, quote_quantity i64, maker_fee i64,
                        taker_fee i64
      3 OrderDone       order_id u64, account_id u64, status u8, reason u16,
                        filled_quantity i64, remaining_quantity i64,
                        filled_quote_quantity i64, side u8, price i64,
                        client_order_id_length u32, then client_order_id UTF-8
      4 CancelRejected  order_id u64, account_id u64, reason u16,
                        client_order_id_length u32, then client_order_id UTF-8

Enums are their ordermesh.model (= proto) numbers. A value outside its field's range is a
broken invariant and raises ``struct.error``.

One digest per command rather than per event halves the hashing of a busy book (most
commands cause one event, a taker many) and loses nothing: any changed, missing, extra or
reordered byte of any event still changes the hash of its command and of every later one.
"""

from __future__ import annotations

from hashlib import sha256
from struct import Struct
from typing import Any, Final

from matcher.core.construct import (
    ENGINE_EVENT,
    FAST,
    ORDER_ACCEPTED,
    ORDER_DONE,
    TRADE_EXECUTED,
    new_object,
)
from ordermesh.events import (
    CancelOrder,
    CancelRejected,
    EngineEvent,
    NewOrder,
    OrderAccepted,
    OrderDone,
    TradeExecuted,
)
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    RejectReason,
    Side,
    Symbol,
    TradeId,
)

GENESIS_HASH: Final = bytes(32)
"""The hash before a symbol's first event."""
HASH_SIZE: Final = 32

KIND_ORDER_ACCEPTED: Final = 1
KIND_TRADE_EXECUTED: Final = 2
KIND_ORDER_DONE: Final = 3
KIND_CANCEL_REJECTED: Final = 4

_HEAD: Final = ">BH{size}sQqq"  # kind, symbol length, symbol, sequence, offset, timestamp
_ACCEPTED_BODY: Final = "QQBBBqqqI"
_TRADE_BODY: Final = "QQQQQBqqqqq"
_DONE_BODY: Final = "QQBHqqqBqI"
_CANCEL_REJECTED_BODY: Final = "QQHI"


class ChainLayout:
    """The packed forms of one symbol's events (a client_order_id's bytes follow its length)."""

    __slots__ = ("accepted", "cancel_rejected", "done", "symbol", "symbol_bytes", "trade")

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.symbol_bytes = symbol.encode()
        head = _HEAD.format(size=len(self.symbol_bytes))
        self.accepted = Struct(head + _ACCEPTED_BODY)
        self.trade = Struct(head + _TRADE_BODY)
        self.done = Struct(head + _DONE_BODY)
        self.cancel_rejected = Struct(head + _CANCEL_REJECTED_BODY)


class EventChain:
    """Writes one symbol's events: numbers them, builds the values, and links each command.

    Per command: `begin`, then one call per event (`accepted`, `trade`, `done`,
    `cancel_rejected`), then `seal`, which hashes the command's events and returns them
    as `EngineEvent`s. Values are built through layout twins (`matcher.core.construct`)
    unless those are unavailable (the mypyc build). The hot path: each method packs and
    builds inline.
    """

    __slots__ = (
        "_bodies",
        "_next",
        "_offset",
        "_pack_accepted",
        "_pack_cancel_rejected",
        "_pack_done",
        "_pack_trade",
        "_parts",
        "_size",
        "_symbol_bytes",
        "_timestamp",
        "last_hash",
        "sequence",
        "symbol",
    )

    def __init__(self, symbol: Symbol, sequence: int = 0, last_hash: bytes = GENESIS_HASH) -> None:
        if len(last_hash) != HASH_SIZE:
            raise ValueError(f"last_hash must be {HASH_SIZE} bytes, was {len(last_hash)}")
        if sequence < 0:
            raise ValueError(f"sequence must be >= 0, was {sequence}")
        layout = ChainLayout(symbol)
        self.symbol = symbol
        self._symbol_bytes = layout.symbol_bytes
        self._size = len(layout.symbol_bytes)
        self._pack_accepted = layout.accepted.pack
        self._pack_trade = layout.trade.pack
        self._pack_done = layout.done.pack
        self._pack_cancel_rejected = layout.cancel_rejected.pack
        self.sequence = sequence
        """The sequence number of the last event sealed (0 before the first)."""
        self.last_hash = last_hash
        """The hash of the last command's events."""
        self._offset = -1
        self._timestamp = 0
        self._next = sequence + 1
        self._bodies: list[Any] = []
        self._parts: list[bytes] = []

    def begin(self, input_offset: int, timestamp_ns: int) -> None:
        """Start the events of the command read at `input_offset`, stamped `timestamp_ns`."""
        self._offset = input_offset
        self._timestamp = timestamp_ns
        self._next = self.sequence + 1
        self._bodies = []
        self._parts = [self.last_hash]

    def seal(self) -> list[EngineEvent]:
        """Hash the command's events into the chain and return them, in order."""
        bodies = self._bodies
        if not bodies:
            return []
        digest = sha256(b"".join(self._parts)).digest()
        self._bodies = []
        self.last_hash = digest
        if len(bodies) == 1 and FAST:  # most commands: spare the loop and a call
            sequence = self.sequence = self.sequence + 1
            event: Any = new_object(ENGINE_EVENT)
            event.symbol = self.symbol
            event.sequence = sequence
            event.input_offset = self._offset
            event.timestamp_ns = self._timestamp
            event.hash = digest
            event.body = bodies[0]
            event.__class__ = EngineEvent
            return [event]
        events: list[EngineEvent] = []
        sequence = self.sequence
        for body in bodies:
            sequence += 1
            events.append(self._event(sequence, digest, body))
        self.sequence = sequence
        return events

    def _event(self, sequence: int, digest: bytes, body: Any) -> EngineEvent:
        event: Any
        if FAST:
            event = new_object(ENGINE_EVENT)
            event.symbol = self.symbol
            event.sequence = sequence
            event.input_offset = self._offset
            event.timestamp_ns = self._timestamp
            event.hash = digest
            event.body = body
            event.__class__ = EngineEvent
        else:
            event = EngineEvent(self.symbol, sequence, self._offset, self._timestamp, digest, body)
        return event  # type: ignore[no-any-return]  # a cast() call costs as much as a field

    def accepted(self, order: NewOrder) -> None:
        """Add OrderAccepted for `order`."""
        sequence = self._next
        self._next = sequence + 1
        client = order.client_order_id.encode()
        parts = self._parts
        parts.append(self._pack_accepted(
            KIND_ORDER_ACCEPTED, self._size, self._symbol_bytes, sequence, self._offset,
            self._timestamp, order.order_id, order.account_id, order.side, order.order_type,
            order.time_in_force, order.price, order.quantity, order.quote_budget, len(client),
        ))  # fmt: skip
        parts.append(client)
        body: Any
        if FAST:
            body = new_object(ORDER_ACCEPTED)
            body.order_id = order.order_id
            body.account_id = order.account_id
            body.client_order_id = order.client_order_id
            body.side = order.side
            body.order_type = order.order_type
            body.time_in_force = order.time_in_force
            body.price = order.price
            body.quantity = order.quantity
            body.quote_budget = order.quote_budget
            body.__class__ = OrderAccepted
        else:
            body = OrderAccepted(
                order.order_id, order.account_id, order.client_order_id, order.side,
                order.order_type, order.time_in_force, order.price, order.quantity,
                order.quote_budget,
            )  # fmt: skip
        self._bodies.append(body)

    def trade(  # noqa: PLR0917 - hot path: positional calls are the cheapest
        self,
        trade_id: int,
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
        """Add TradeExecuted."""
        sequence = self._next
        self._next = sequence + 1
        self._parts.append(self._pack_trade(
            KIND_TRADE_EXECUTED, self._size, self._symbol_bytes, sequence, self._offset,
            self._timestamp, trade_id, maker_order_id, taker_order_id, maker_account_id,
            taker_account_id, taker_side, price, quantity, quote_quantity, maker_fee, taker_fee,
        ))  # fmt: skip
        body: Any
        if FAST:
            body = new_object(TRADE_EXECUTED)
            body.trade_id = trade_id
            body.maker_order_id = maker_order_id
            body.taker_order_id = taker_order_id
            body.maker_account_id = maker_account_id
            body.taker_account_id = taker_account_id
            body.taker_side = taker_side
            body.price = price
            body.quantity = quantity
            body.quote_quantity = quote_quantity
            body.maker_fee = maker_fee
            body.taker_fee = taker_fee
            body.__class__ = TradeExecuted
        else:
            body = TradeExecuted(
                TradeId(trade_id), maker_order_id, taker_order_id, maker_account_id,
                taker_account_id, taker_side, price, quantity, quote_quantity, maker_fee,
                taker_fee,
            )  # fmt: skip
        self._bodies.append(body)

    def done(  # noqa: PLR0917 - hot path: positional calls are the cheapest
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
        """Add OrderDone."""
        sequence = self._next
        self._next = sequence + 1
        client = client_order_id.encode()
        parts = self._parts
        parts.append(self._pack_done(
            KIND_ORDER_DONE, self._size, self._symbol_bytes, sequence, self._offset,
            self._timestamp, order_id, account_id, status, reason, filled_quantity,
            remaining_quantity, filled_quote_quantity, side, price, len(client),
        ))  # fmt: skip
        parts.append(client)
        body: Any
        if FAST:
            body = new_object(ORDER_DONE)
            body.order_id = order_id
            body.account_id = account_id
            body.client_order_id = client_order_id
            body.status = status
            body.reason = reason
            body.filled_quantity = filled_quantity
            body.remaining_quantity = remaining_quantity
            body.filled_quote_quantity = filled_quote_quantity
            body.side = side
            body.price = price
            body.__class__ = OrderDone
        else:
            body = OrderDone(
                order_id, account_id, client_order_id, status, reason, filled_quantity,
                remaining_quantity, filled_quote_quantity, side, price,
            )  # fmt: skip
        self._bodies.append(body)

    def cancel_rejected(self, cancel: CancelOrder, reason: RejectReason) -> None:
        """Add CancelRejected, naming the order as the cancel named it."""
        sequence = self._next
        self._next = sequence + 1
        client = cancel.client_order_id.encode()
        parts = self._parts
        parts.append(self._pack_cancel_rejected(
            KIND_CANCEL_REJECTED, self._size, self._symbol_bytes, sequence, self._offset,
            self._timestamp, cancel.order_id, cancel.account_id, reason, len(client),
        ))  # fmt: skip
        parts.append(client)
        self._bodies.append(
            CancelRejected(cancel.order_id, cancel.account_id, cancel.client_order_id, reason)
        )
