"""What the streams tell, worked out once per command group: order updates and book changes.

Pure and synchronous, like `gateway.outcomes`: the engine tail hands each complete command
group to `LiveOrders.apply`, which follows every order it has seen since the tail started
(its account, side, price, quantity, what it has filled, whether it rests) and returns:

- one `OrderUpdate` per event about an order (accepted, each fill, done), for the order
  update streams of its account;
- one `MarketStep` per event, for the market data streams of the symbol: the trade it
  reports, if any, and the change it makes to aggregated price levels, as deltas
  (`LevelChange`). Every event gets a step, even one that changes nothing visible, so that
  a market data client sees every sequence number and can tell a gap.

An order that rested before the tail started is unknown until the log mentions it; every
event that can name it carries its side and price (a trade its maker's, an OrderDone the
order's own), so its changes are always placed on the right price level.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.outcomes import CommandGroup, Fill, fill_of
from ordermesh.events import CancelRejected, OrderAccepted, OrderDone, TradeExecuted
from ordermesh.markets import MarketTable
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    Symbol,
    TimeInForce,
)


@dataclass(slots=True)
class LiveOrder:
    """An order as the engine log has told it so far.

    Side, type, time in force, price, quantity and budget come from its OrderAccepted; for
    an order accepted before the tail started, side and price are what its trades or its end
    told, the rest unknown (None, 0).
    """

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side | None
    order_type: OrderType | None
    time_in_force: TimeInForce | None
    price: int
    quantity: int
    quote_budget: int
    filled_quantity: int = 0
    filled_quote_quantity: int = 0
    status: OrderStatus = OrderStatus.NEW
    reason: RejectReason = RejectReason.UNSPECIFIED
    created_ns: int = 0
    """The time of its OrderAccepted; 0 when the tail did not read it."""
    updated_ns: int = 0
    resting: bool = False
    """On the book: rested after its own command, or met as a maker."""


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order at one event: a frozen copy of its `LiveOrder`."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side | None
    order_type: OrderType | None
    time_in_force: TimeInForce | None
    price: int
    quantity: int
    quote_budget: int
    filled_quantity: int
    filled_quote_quantity: int
    status: OrderStatus
    reason: RejectReason
    created_ns: int
    updated_ns: int


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """Something happened to an order: accepted, a fill, or done."""

    order: OrderView
    fill: Fill | None
    """Set when the update is a fill, from the order's side."""
    sequence: int
    """The market sequence of the event behind it."""


@dataclass(frozen=True, slots=True)
class LevelChange:
    """A change of one aggregated price level, as a delta."""

    side: Side
    price: int
    quantity: int
    """Base atoms added (negative: taken away)."""
    order_count: int
    """Orders added (negative: taken away)."""


@dataclass(frozen=True, slots=True)
class MarketStep:
    """What one engine event changed in its market."""

    sequence: int
    timestamp_ns: int
    trade: TradeExecuted | None
    changes: tuple[LevelChange, ...]


@dataclass(frozen=True, slots=True)
class GroupChanges:
    """Everything the streams need from one command group."""

    symbol: Symbol
    first_sequence: int
    last_sequence: int
    updates: tuple[OrderUpdate, ...]
    steps: tuple[MarketStep, ...]


def _view(order: LiveOrder) -> OrderView:
    return OrderView(
        order.order_id, order.account_id, order.client_order_id, order.symbol, order.side,
        order.order_type, order.time_in_force, order.price, order.quantity, order.quote_budget,
        order.filled_quantity, order.filled_quote_quantity, order.status, order.reason,
        order.created_ns, order.updated_ns,
    )  # fmt: skip


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


class LiveOrders:
    """Every order the engine tail has seen and that has not ended yet.

    Args:
        markets: the market table (a fill's fee asset depends on the market).
    """

    def __init__(self, markets: MarketTable) -> None:
        self._markets = markets
        self._orders: dict[OrderId, LiveOrder] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def apply(self, group: CommandGroup) -> GroupChanges:
        """Follow one command group; what the streams are to be told of it."""
        work = _GroupWork(self, group)
        for event in group.events:
            work.event(event.sequence, event.timestamp_ns, event.body)
        work.finish()
        events = group.events
        return GroupChanges(
            group.symbol,
            events[0].sequence,
            events[-1].sequence,
            tuple(work.updates),
            tuple(work.steps),
        )


class _GroupWork:
    """The walk through one group's events (a helper of `LiveOrders.apply`)."""

    def __init__(self, live: LiveOrders, group: CommandGroup) -> None:
        self._orders = live._orders  # a helper of that class: shares its state
        self._market = live._markets.market(group.symbol)
        self._symbol = group.symbol
        self._taker: LiveOrder | None = None
        self._ended: set[OrderId] = set()
        self.updates: list[OrderUpdate] = []
        self.steps: list[MarketStep] = []

    def event(
        self, sequence: int, timestamp_ns: int, body: OrderAccepted | TradeExecuted | object
    ) -> None:
        changes: list[LevelChange] = []
        trade: TradeExecuted | None = None
        if isinstance(body, OrderAccepted):
            self._accepted(body, sequence, timestamp_ns)
        elif isinstance(body, TradeExecuted):
            trade = body
            changes.extend(self._traded(body, sequence, timestamp_ns))
        elif isinstance(body, OrderDone):
            change = self._done(body, sequence, timestamp_ns)
            if change is not None:
                changes.append(change)
        elif not isinstance(body, CancelRejected):  # pragma: no cover - a new event type
            raise TypeError(f"unknown engine event {body!r}")
        self.steps.append(MarketStep(sequence, timestamp_ns, trade, tuple(changes)))

    def _accepted(self, body: OrderAccepted, sequence: int, timestamp_ns: int) -> None:
        order = LiveOrder(
            body.order_id, body.account_id, body.client_order_id, self._symbol, body.side,
            body.order_type, body.time_in_force, body.price, body.quantity, body.quote_budget,
            created_ns=timestamp_ns, updated_ns=timestamp_ns,
        )  # fmt: skip
        self._orders[body.order_id] = order
        self._taker = order
        self.updates.append(OrderUpdate(_view(order), None, sequence))

    def _traded(self, body: TradeExecuted, sequence: int, timestamp_ns: int) -> list[LevelChange]:
        maker = self._orders.get(body.maker_order_id)
        if maker is None:  # rested before the tail started: the trade tells side and price
            maker = self._orders[body.maker_order_id] = LiveOrder(
                body.maker_order_id, body.maker_account_id, ClientOrderId(""), self._symbol,
                _opposite(body.taker_side), OrderType.LIMIT, None, body.price, 0, 0,
                resting=True,
            )  # fmt: skip
        taker = self._orders.get(body.taker_order_id)
        if taker is None:  # pragma: no cover - a taker's group begins with its OrderAccepted
            raise ValueError(f"trade {body.trade_id}: taker {body.taker_order_id} not accepted")
        for order in (maker, taker):
            order.filled_quantity += body.quantity
            order.filled_quote_quantity += body.quote_quantity
            order.updated_ns = timestamp_ns
            full = order.quantity and order.filled_quantity >= order.quantity
            order.status = OrderStatus.FILLED if full else OrderStatus.PARTIALLY_FILLED
            fill = fill_of(body, order.order_id, timestamp_ns, self._market)
            self.updates.append(OrderUpdate(_view(order), fill, sequence))
        if maker.side is None:  # pragma: no cover - makers are created with a side
            raise ValueError(f"maker {maker.order_id} without a side")
        return [LevelChange(maker.side, maker.price, -body.quantity, 0)]

    def _done(self, body: OrderDone, sequence: int, timestamp_ns: int) -> LevelChange | None:
        self._ended.add(body.order_id)
        order = self._orders.pop(body.order_id, None)
        if order is None:
            # Refused before acceptance, or an order that rested before the tail started
            # (a taker's group begins with its OrderAccepted, so any other end is a maker's).
            order = LiveOrder(
                body.order_id, body.account_id, body.client_order_id, self._symbol,
                body.side, None, None, body.price,
                body.filled_quantity + body.remaining_quantity, 0,
                resting=body.status is not OrderStatus.REJECTED,
            )  # fmt: skip
        order.status = body.status
        order.reason = body.reason
        order.filled_quantity = body.filled_quantity
        order.filled_quote_quantity = body.filled_quote_quantity
        order.updated_ns = timestamp_ns
        if not order.client_order_id:
            order.client_order_id = body.client_order_id
        self.updates.append(OrderUpdate(_view(order), None, sequence))
        if order.resting and order.side is not None:
            return LevelChange(order.side, order.price, -body.remaining_quantity, -1)
        return None

    def finish(self) -> None:
        """Rest the group's taker if it is still live: a LIMIT order not done."""
        taker = self._taker
        if (
            taker is None
            or taker.order_id in self._ended
            or taker.order_type is not OrderType.LIMIT
        ):
            if taker is not None and taker.order_id not in self._ended:  # pragma: no cover
                raise ValueError(f"order {taker.order_id}: a MARKET order left live")
            return
        remaining = taker.quantity - taker.filled_quantity
        if remaining <= 0 or taker.side is None:  # pragma: no cover - the matcher ends it
            raise ValueError(f"order {taker.order_id} rests with nothing left")
        taker.resting = True
        last = self.steps[-1]
        rest = LevelChange(taker.side, taker.price, remaining, 1)
        self.steps[-1] = MarketStep(
            last.sequence, last.timestamp_ns, last.trade, (*last.changes, rest)
        )
