"""Engine events grouped by the command that caused them, and what a group says of an order.

Pure and synchronous: the engine tail (`gateway.results`) feeds events in; complete groups
come out. All events of one command share its input_offset and hash and have consecutive
sequence numbers (matcher/core/chain.py). A group is complete:

- when the digest of its events so far equals the hash they carry (`ChainVerifier`); that
  needs the hash of the symbol's previous command, known from the second group on;
- for the first group of a symbol after the tail started (the previous hash is unknown):
  when an event of another command arrives, or when the tail has read everything committed
  in the partition (`flush`). The matcher writes all events of a command in one Kafka
  transaction and the tail reads committed records only, so a command's events become
  readable together; once the tail is at the end of the partition none of them is missing.

A broken chain (a gap, interleaved commands, a hash that does not match) raises ChainError:
the tail must stop rather than answer from a log it cannot trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from matcher.core.verify import ChainError, ChainVerifier
from ordermesh.events import CancelRejected, EngineEvent, OrderAccepted, OrderDone, TradeExecuted
from ordermesh.markets import Market
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    OrderId,
    OrderStatus,
    RejectReason,
    Side,
    Symbol,
)

__all__ = [
    "ChainError",
    "CommandGroup",
    "CommandGroups",
    "Fill",
    "GroupKind",
    "OrderOutcome",
    "order_outcome",
]


class GroupKind(Enum):
    """Which command a group answers."""

    NEW_ORDER = "new_order"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """All the events one command caused, in order."""

    symbol: Symbol
    events: tuple[EngineEvent, ...]

    @property
    def kind(self) -> GroupKind:
        """NEW_ORDER or CANCEL, told by the group's first event.

        A NewOrder's group begins with its OrderAccepted or its rejection; a cancel's is the
        target's OrderDone(CANCELED) or a CancelRejected.
        """
        first = self.events[0].body
        if isinstance(first, OrderAccepted) or (
            isinstance(first, OrderDone) and first.status is OrderStatus.REJECTED
        ):
            return GroupKind.NEW_ORDER
        return GroupKind.CANCEL

    @property
    def subject(self) -> tuple[AccountId, OrderId, ClientOrderId]:
        """The account, order_id and client_order_id of the order the command was about."""
        first = self.events[0].body
        if isinstance(first, OrderAccepted | OrderDone | CancelRejected):
            return first.account_id, first.order_id, first.client_order_id
        raise ChainError(f"{self.symbol}: a command's events begin with a trade")


@dataclass(slots=True)
class _Chain:
    """One symbol's progress: the verifier once the previous hash is known, the open group."""

    partition: int
    verifier: ChainVerifier | None = None
    events: list[EngineEvent] = field(default_factory=list)

    def close_unverified(self) -> CommandGroup:
        """End the open group at a boundary found without its previous hash."""
        events, self.events = self.events, []
        last = events[-1]
        self.verifier = ChainVerifier(last.hash, last.sequence, last.symbol)
        return CommandGroup(last.symbol, tuple(events))


class CommandGroups:
    """Assembles one engine topic's events, read from anywhere on, into complete groups."""

    def __init__(self) -> None:
        self._chains: dict[str, _Chain] = {}

    def add(self, event: EngineEvent, partition: int) -> list[CommandGroup]:
        """Take the next event of a partition; return the groups it completes (0 to 2).

        Raises:
            ChainError: a sequence gap, two commands interleaved, or a hash that does not
                match.
        """
        chain = self._chains.get(event.symbol)
        if chain is None:
            chain = self._chains[event.symbol] = _Chain(partition)
        completed: list[CommandGroup] = []
        if chain.verifier is None and chain.events:
            previous = chain.events[-1]
            if event.input_offset != previous.input_offset:
                completed.append(chain.close_unverified())
            elif event.sequence != previous.sequence + 1 or event.hash != previous.hash:
                raise ChainError(
                    f"{event.symbol}: event {event.sequence} does not follow event "
                    f"{previous.sequence} of the same command"
                )
        chain.events.append(event)
        if chain.verifier is not None and chain.verifier.add(event):
            events, chain.events = chain.events, []
            completed.append(CommandGroup(event.symbol, tuple(events)))
        return completed

    def open_partitions(self) -> set[int]:
        """Partitions with a group that only the end of the partition can complete."""
        return {c.partition for c in self._chains.values() if c.verifier is None and c.events}

    def flush(self, partition: int) -> list[CommandGroup]:
        """Complete the open first groups of `partition`: the tail has read all it holds."""
        return [
            chain.close_unverified()
            for chain in self._chains.values()
            if chain.partition == partition and chain.verifier is None and chain.events
        ]


# -- what a NewOrder's group says ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of an order, from that order's side."""

    trade_id: int
    price: int
    quantity: int
    quote_quantity: int
    fee: int
    """In `fee_asset`: the asset the order receives."""
    fee_asset: Asset
    maker: bool
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """The matcher's first answer to a NewOrder: rested, filled, expired or rejected."""

    order_id: OrderId
    status: OrderStatus
    reason: RejectReason
    filled_quantity: int
    filled_quote_quantity: int
    fills: tuple[Fill, ...]


def order_outcome(group: CommandGroup, market: Market) -> OrderOutcome:
    """The outcome of the NewOrder whose group this is.

    NEW or PARTIALLY_FILLED when the order rests (its group has no OrderDone of it), else
    the status of its OrderDone: FILLED, EXPIRED or REJECTED, with the reason.
    """
    _, order_id, _ = group.subject
    fills: list[Fill] = []
    done: OrderDone | None = None
    for event in group.events:
        body = event.body
        if isinstance(body, TradeExecuted) and order_id in {
            body.taker_order_id,
            body.maker_order_id,
        }:
            fills.append(fill_of(body, order_id, event.timestamp_ns, market))
        elif isinstance(body, OrderDone) and body.order_id == order_id:
            done = body
    if done is not None:
        return OrderOutcome(
            order_id, done.status, done.reason, done.filled_quantity,
            done.filled_quote_quantity, tuple(fills),
        )  # fmt: skip
    status = OrderStatus.PARTIALLY_FILLED if fills else OrderStatus.NEW
    return OrderOutcome(
        order_id, status, RejectReason.UNSPECIFIED, sum(f.quantity for f in fills),
        sum(f.quote_quantity for f in fills), tuple(fills),
    )  # fmt: skip


def fill_of(trade: TradeExecuted, order_id: OrderId, timestamp_ns: int, market: Market) -> Fill:
    """`trade` as a Fill from the side of order `order_id`, its maker or its taker."""
    maker = trade.maker_order_id == order_id and trade.taker_order_id != order_id
    taker_buys = trade.taker_side is Side.BUY
    buys = taker_buys != maker
    return Fill(
        trade_id=trade.trade_id,
        price=trade.price,
        quantity=trade.quantity,
        quote_quantity=trade.quote_quantity,
        fee=trade.maker_fee if maker else trade.taker_fee,
        fee_asset=market.base.code if buys else market.quote.code,
        maker=maker,
        timestamp_ns=timestamp_ns,
    )


def done_statuses(group: CommandGroup) -> list[tuple[OrderId, OrderStatus]]:
    """Every order the group ends, with how it ended."""
    return [
        (event.body.order_id, event.body.status)
        for event in group.events
        if isinstance(event.body, OrderDone)
    ]
