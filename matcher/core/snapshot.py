"""Immutable views of a book: its snapshot (to resume elsewhere), orders and depth."""

from __future__ import annotations

from dataclasses import dataclass

from ordermesh.events import NewOrder
from ordermesh.markets import Market
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)


class SnapshotError(ValueError):
    """A snapshot that cannot be a book of this market; restoring it would corrupt state."""


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """One resting order as the book holds it."""

    order_id: OrderId
    account_id: AccountId
    client_order_id: ClientOrderId
    side: Side
    price: int
    """Quote atoms per whole base unit."""
    quantity: int
    """The original quantity in base atoms."""
    remaining_quantity: int
    """Base atoms still open (> 0)."""
    filled_quote_quantity: int
    """Quote atoms of its fills so far."""
    self_trade_prevention: SelfTradePrevention
    timestamp_ns: int
    """When it was placed (its NewOrder's timestamp)."""

    @property
    def filled_quantity(self) -> int:
        """Base atoms filled so far."""
        return self.quantity - self.remaining_quantity

    def placed(self, symbol: Symbol) -> NewOrder:
        """The LIMIT GTC NewOrder that placed this order (post_only no longer matters)."""
        return NewOrder(
            symbol=symbol,
            order_id=self.order_id,
            account_id=self.account_id,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            price=self.price,
            quantity=self.quantity,
            quote_budget=0,
            post_only=False,
            self_trade_prevention=self.self_trade_prevention,
            timestamp_ns=self.timestamp_ns,
        )


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A book at one point of its input: enough to resume by replaying what follows it."""

    symbol: Symbol
    input_offset: int
    """The offset of the last command applied (-1 before the first); replay from the next."""
    sequence: int
    """The sequence number of the last event emitted (0 before the first)."""
    hash: bytes
    """The hash of that event (32 zero bytes before the first)."""
    next_trade_id: int
    """The id the next trade gets."""
    bids: tuple[OrderSnapshot, ...]
    """Best price first, then time priority."""
    asks: tuple[OrderSnapshot, ...]
    """Best price first, then time priority."""


@dataclass(frozen=True, slots=True)
class LevelView:
    """The aggregated orders at one price."""

    price: int
    quantity: int
    """Base atoms open at this price."""
    order_count: int


def check_snapshot(market: Market, snapshot: BookSnapshot) -> None:
    """Raise SnapshotError unless `snapshot` is a consistent book of `market`."""
    if snapshot.symbol != market.symbol:
        raise SnapshotError(f"snapshot is of {snapshot.symbol!r}, the market is {market.symbol!r}")
    if len(snapshot.hash) != 32:
        raise SnapshotError(f"hash must be 32 bytes, was {len(snapshot.hash)}")
    if snapshot.sequence < 0 or snapshot.next_trade_id < 1 or snapshot.input_offset < -1:
        raise SnapshotError(
            f"counters out of range: sequence {snapshot.sequence}, next_trade_id "
            f"{snapshot.next_trade_id}, input_offset {snapshot.input_offset}"
        )
    if snapshot.sequence == 0 and snapshot.hash != bytes(32):
        raise SnapshotError("a snapshot before any event must carry the zero hash")
    seen_orders: set[int] = set()
    seen_clients: set[tuple[int, str]] = set()
    for side, orders in ((Side.BUY, snapshot.bids), (Side.SELL, snapshot.asks)):
        previous: int | None = None
        for order in orders:
            _check_order(market, side, order)
            if previous is not None and (
                order.price > previous if side == Side.BUY else order.price < previous
            ):
                raise SnapshotError(f"{side.name} orders not best price first at {order.order_id}")
            previous = order.price
            if order.order_id in seen_orders:
                raise SnapshotError(f"order {order.order_id} appears twice")
            seen_orders.add(order.order_id)
            client = (order.account_id, order.client_order_id)
            if order.client_order_id and client in seen_clients:
                raise SnapshotError(f"client_order_id {client} appears twice")
            seen_clients.add(client)
    _check_uncrossed(snapshot)


def _check_order(market: Market, side: Side, order: OrderSnapshot) -> None:
    where = f"order {order.order_id}"
    if order.side != side:
        raise SnapshotError(f"{where} is a {order.side.name} in the {side.name} list")
    if order.order_id <= 0 or order.price <= 0 or order.price % market.tick_size:
        raise SnapshotError(f"{where}: order_id or price off the grid ({order.price})")
    if not 0 < order.remaining_quantity <= order.quantity:
        raise SnapshotError(
            f"{where}: remaining {order.remaining_quantity} not in 1..{order.quantity}"
        )
    if order.quantity % market.lot_size or order.remaining_quantity % market.lot_size:
        raise SnapshotError(f"{where}: quantities off the lot grid")
    if order.filled_quote_quantity < 0:
        raise SnapshotError(f"{where}: filled_quote_quantity {order.filled_quote_quantity} < 0")


def _check_uncrossed(snapshot: BookSnapshot) -> None:
    if snapshot.bids and snapshot.asks and snapshot.bids[0].price >= snapshot.asks[0].price:
        raise SnapshotError(
            f"book is crossed: bid {snapshot.bids[0].price} >= ask {snapshot.asks[0].price}"
        )
