"""One symbol's order book: price-time matching of NewOrder and CancelOrder into events.

`OrderBook.apply(command, offset)` is the whole interface of change. It returns the events
the command caused, in the order they happened:

- NewOrder refused (invalid, duplicate id, post-only that would take, fill-or-kill that
  cannot fill): OrderDone(REJECTED, reason) only.
- NewOrder taken: OrderAccepted; then for each maker met, in price-time priority, either
  TradeExecuted (followed by the maker's OrderDone(FILLED) when that fills it) or, under
  self-trade prevention EXPIRE_MAKER/EXPIRE_BOTH, the maker's OrderDone(EXPIRED,
  SELF_TRADE_PREVENTED); finally the taker's OrderDone unless it rests on the book.
- CancelOrder: the target's OrderDone(CANCELED), or CancelRejected(UNKNOWN_ORDER) when no
  live order of the cancel's account matches (another account's order is unknown too).

Every fill is at the maker's price. A MARKET order never rests. A MARKET BUY spends at most
its quote_budget: at each maker it buys what the rest of the budget affords there, rounded
down to the lot (and no more than its quantity when it has one). The taker's self-trade
prevention mode decides what happens when it meets its own account's order.

The book is a pure function of its inputs: no clock, no randomness, no unordered
iteration. Commands at or below the last applied offset were applied already (a replay
after a restore) and yield nothing.
"""

from __future__ import annotations

from typing import Final

from matcher.core.chain import EventChain
from matcher.core.fok import fills_completely
from matcher.core.levels import NO_LIMIT, UNBOUNDED, BookSide, PriceLevel, RestingOrder, view
from matcher.core.rules import ACCEPTABLE, OrderRules
from matcher.core.snapshot import BookSnapshot, LevelView, OrderSnapshot, check_snapshot
from ordermesh.amounts import BPS_DENOMINATOR, pow10
from ordermesh.events import CancelOrder, EngineEvent, NewOrder, OrderCommand
from ordermesh.markets import Market
from ordermesh.model import (
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)

# Enum members as module constants: an enum attribute lookup costs more than the comparison.
_BUY: Final = Side.BUY
_MARKET: Final = OrderType.MARKET
_LIMIT: Final = OrderType.LIMIT
_GTC: Final = TimeInForce.GTC
_FOK: Final = TimeInForce.FOK
_STP_NONE: Final = SelfTradePrevention.NONE
_EXPIRE_TAKER: Final = SelfTradePrevention.EXPIRE_TAKER
_EXPIRE_MAKER: Final = SelfTradePrevention.EXPIRE_MAKER
_FILLED: Final = OrderStatus.FILLED
_CANCELED: Final = OrderStatus.CANCELED
_EXPIRED: Final = OrderStatus.EXPIRED
_REJECTED: Final = OrderStatus.REJECTED
_NO_REASON: Final = RejectReason.UNSPECIFIED
_SELF_TRADE: Final = RejectReason.SELF_TRADE_PREVENTED
_UNKNOWN_ORDER: Final = RejectReason.UNKNOWN_ORDER
_BPS: Final = BPS_DENOMINATOR  # the fee formula of ordermesh.amounts.fee, inlined in _take


# Why the taker stopped taking.
_END_BOOK: Final = 0  # nothing left on the other side within its limit
_END_FILLED: Final = 1  # its whole quantity traded
_END_BUDGET: Final = 2  # its quote budget cannot buy one more lot
_END_SELF: Final = 3  # self-trade prevention expired it


class WrongSymbolError(ValueError):
    """A command routed to the book of another symbol: a bug upstream, never a rejection."""


class OrderBook:
    """The order book of one symbol, with its event chain. Not thread-safe."""

    __slots__ = (
        "_asks",
        "_bids",
        "_by_client",
        "_chain",
        "_last_offset",
        "_lot",
        "_maker_bps",
        "_market",
        "_next_trade_id",
        "_orders",
        "_rules",
        "_symbol",
        "_taker_bps",
        "_unit",
    )

    def __init__(self, market: Market) -> None:
        self._market = market
        self._symbol = market.symbol
        self._rules = OrderRules(market)
        self._unit = pow10(market.base.scale)
        self._lot = market.lot_size
        self._maker_bps = market.maker_fee_bps
        self._taker_bps = market.taker_fee_bps
        self._bids = BookSide(Side.BUY)
        self._asks = BookSide(Side.SELL)
        self._orders: dict[int, RestingOrder] = {}
        self._by_client: dict[tuple[int, str], RestingOrder] = {}
        self._chain = EventChain(market.symbol)
        self._next_trade_id = 1
        self._last_offset = -1

    # -- state ---------------------------------------------------------------------------

    @property
    def market(self) -> Market:
        """The market whose rules and fees this book applies."""
        return self._market

    @property
    def symbol(self) -> Symbol:
        """The symbol of this book."""
        return self._symbol

    @property
    def last_offset(self) -> int:
        """The input offset of the last command applied (-1 before the first)."""
        return self._last_offset

    @property
    def sequence(self) -> int:
        """The sequence number of the last event (0 before the first)."""
        return self._chain.sequence

    @property
    def last_hash(self) -> bytes:
        """The hash of the last command's events (32 zero bytes before the first)."""
        return self._chain.last_hash

    @property
    def next_trade_id(self) -> int:
        """The id the next trade gets."""
        return self._next_trade_id

    # -- commands ------------------------------------------------------------------------

    def apply(self, command: OrderCommand, offset: int) -> list[EngineEvent]:
        """Apply one command read at `offset` of the input; return the events it caused.

        Raises:
            WrongSymbolError: the command is for another symbol.
        """
        if command.symbol != self._symbol:
            raise WrongSymbolError(
                f"{command.symbol!r} command at offset {offset} sent to the {self._symbol!r} book"
            )
        if offset <= self._last_offset:
            return []
        self._last_offset = offset
        chain = self._chain
        chain.begin(offset, command.timestamp_ns)
        if isinstance(command, NewOrder):
            self._new_order(command)
        else:
            self._cancel(command)
        return chain.seal()

    def _new_order(self, order: NewOrder) -> None:
        reason = self._rules.check(order)
        if reason == ACCEPTABLE:
            reason = self._refusal(order)
        if reason != ACCEPTABLE:
            self._chain.done(
                order.order_id, order.account_id, order.client_order_id, _REJECTED, reason,
                0, order.quantity, 0, order.side, order.price,
            )  # fmt: skip
            return
        self._chain.accepted(order)
        other = self._asks if order.side == _BUY else self._bids
        keys = other.keys
        if order.order_type == _LIMIT and (not keys or keys[-1] < other.sign * order.price):
            # Nothing to take (most orders): rest, or expire an IOC untouched.
            if order.time_in_force == _GTC:
                self._rest(order, order.quantity, 0)
                return
            filled, filled_quote, end = 0, 0, _END_BOOK
        else:
            filled, filled_quote, end = self._take(order, other)
        quantity = order.quantity
        if quantity == 0:  # a MARKET BUY by budget alone: done when the budget is spent
            remaining = 0
            status, reason = (_FILLED, _NO_REASON) if end == _END_BUDGET and filled else _ENDED[end]
        else:
            remaining = quantity - filled
            if end == _END_BOOK and order.order_type == _LIMIT and order.time_in_force == _GTC:
                self._rest(order, remaining, filled_quote)
                return
            status, reason = _ENDED[end]
        self._chain.done(
            order.order_id, order.account_id, order.client_order_id, status, reason, filled,
            remaining, filled_quote, order.side, order.price,
        )  # fmt: skip

    def _refusal(self, order: NewOrder) -> RejectReason:
        """The book's own reasons to refuse an order the market rules accept."""
        if order.order_id in self._orders or (
            order.client_order_id and (order.account_id, order.client_order_id) in self._by_client
        ):
            return RejectReason.DUPLICATE_ORDER_ID
        if order.post_only:
            other = self._asks if order.side == _BUY else self._bids
            keys = other.keys
            if keys and keys[-1] >= other.sign * order.price:
                return RejectReason.POST_ONLY_WOULD_TAKE
        if order.time_in_force == _FOK and not fills_completely(
            order, self._asks if order.side == _BUY else self._bids, self._unit, self._lot
        ):
            return RejectReason.FOK_NOT_FILLABLE
        return ACCEPTABLE

    def _take(self, order: NewOrder, side: BookSide) -> tuple[int, int, int]:  # noqa: C901, PLR0912, PLR0915
        """Match `order` against `side`; return (filled, filled quote, why it stopped).

        Deliberately one long loop: this is the hot path, and every call or lookup saved
        here is measurable throughput (bench/matcher_bench.py).
        """
        keys = side.keys
        levels = side.levels
        is_buy = order.side == _BUY
        budget = -1  # quote atoms left to spend; -1 when the order has no budget
        if order.order_type == _MARKET:
            limit = NO_LIMIT
            if is_buy:
                budget = order.quote_budget
        else:
            limit = side.sign * order.price
        chain = self._chain
        unit, lot = self._unit, self._lot
        maker_bps, taker_bps = self._maker_bps, self._taker_bps
        taker_id, taker_account, taker_side = order.order_id, order.account_id, order.side
        prevention = order.self_trade_prevention
        wanted = order.quantity or UNBOUNDED
        filled = filled_quote = 0
        end = _END_BOOK
        while keys:
            key = keys[-1]
            if key < limit:
                break
            level = levels[key]
            price = level.price
            queue = level.orders
            while level.count:
                maker = queue[0]
                available = maker.remaining
                if not available:  # canceled earlier; dropped when it reaches the front
                    queue.popleft()
                    continue
                placed = maker.order
                if placed.account_id == taker_account and prevention != _STP_NONE:
                    if prevention != _EXPIRE_TAKER:
                        self._retire(level, _EXPIRED, _SELF_TRADE)
                    if prevention != _EXPIRE_MAKER:
                        end = _END_SELF
                        break
                    continue
                quantity = available if available < wanted else wanted
                if budget >= 0:
                    affordable = budget * unit // price // lot * lot
                    if affordable < quantity:
                        quantity = affordable
                        if not quantity:
                            end = _END_BUDGET
                            break
                quote = price * quantity // unit  # exact: price and quantity are on the grid
                if is_buy:
                    maker_fee, taker_fee = quote * maker_bps // _BPS, quantity * taker_bps // _BPS
                else:
                    maker_fee, taker_fee = quantity * maker_bps // _BPS, quote * taker_bps // _BPS
                trade_id = self._next_trade_id
                self._next_trade_id = trade_id + 1
                chain.trade(
                    trade_id, placed.order_id, taker_id, placed.account_id, taker_account,
                    taker_side, price, quantity, quote, maker_fee, taker_fee,
                )  # fmt: skip
                maker.filled_quote += quote
                maker.remaining = available - quantity
                filled += quantity
                filled_quote += quote
                wanted -= quantity
                if quantity == available:
                    self._retire(level, _FILLED, _NO_REASON)
                if not wanted:
                    end = _END_FILLED
                    break
                if budget >= 0:
                    budget -= quote
                    if not budget:
                        end = _END_BUDGET
                        break
            if not level.count:
                side.drop_level(key)
            if end != _END_BOOK:
                break
        return filled, filled_quote, end

    def _retire(self, level: PriceLevel, status: OrderStatus, reason: RejectReason) -> None:
        """Take the order at the front of `level` off the book and report it done."""
        maker = level.orders.popleft()
        level.count -= 1
        placed = maker.order
        del self._orders[placed.order_id]
        if placed.client_order_id:
            del self._by_client[(placed.account_id, placed.client_order_id)]
        remaining = maker.remaining
        maker.remaining = 0
        self._chain.done(
            placed.order_id, placed.account_id, placed.client_order_id, status, reason,
            placed.quantity - remaining, remaining, maker.filled_quote, placed.side, placed.price,
        )  # fmt: skip

    def _rest(self, order: NewOrder, remaining: int, filled_quote: int) -> None:
        """Put `order` on its side of the book (inlined: most commands end here)."""
        resting = RestingOrder(order, remaining, filled_quote)
        side = self._bids if order.side == _BUY else self._asks
        key = side.sign * order.price
        level = side.levels.get(key)
        if level is None:
            level = side.open_level(key, order.price)
        level.orders.append(resting)
        level.count += 1
        self._orders[order.order_id] = resting
        if order.client_order_id:
            self._by_client[(order.account_id, order.client_order_id)] = resting

    def _cancel(self, cancel: CancelOrder) -> None:
        target: RestingOrder | None = None
        if cancel.order_id:
            target = self._orders.get(cancel.order_id)
        elif cancel.client_order_id:
            target = self._by_client.get((cancel.account_id, cancel.client_order_id))
        if target is None or target.order.account_id != cancel.account_id:
            self._chain.cancel_rejected(cancel, _UNKNOWN_ORDER)
            return
        order = target.order
        del self._orders[order.order_id]
        if order.client_order_id:
            del self._by_client[(order.account_id, order.client_order_id)]
        remaining = target.remaining
        (self._bids if order.side == _BUY else self._asks).take_out(target)
        self._chain.done(
            order.order_id, order.account_id, order.client_order_id, _CANCELED, _NO_REASON,
            order.quantity - remaining, remaining, target.filled_quote, order.side, order.price,
        )  # fmt: skip

    # -- views ---------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        """The highest bid price, or None."""
        return self._bids.best_price()

    def best_ask(self) -> int | None:
        """The lowest ask price, or None."""
        return self._asks.best_price()

    def __len__(self) -> int:
        """The number of resting orders."""
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        """Whether an order with this id rests on the book."""
        return order_id in self._orders

    def order(self, order_id: OrderId) -> OrderSnapshot | None:
        """The resting order `order_id`, or None if it is not on the book."""
        resting = self._orders.get(order_id)
        return None if resting is None else view(resting)

    def orders(self, side: Side) -> list[OrderSnapshot]:
        """The resting orders of one side in price-time priority."""
        return (self._bids if side == _BUY else self._asks).views()

    def depth(self, side: Side, levels: int = 0) -> list[LevelView]:
        """Aggregated levels of one side, best first; all of them when `levels` is 0."""
        return (self._bids if side == _BUY else self._asks).depth(levels)

    # -- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> BookSnapshot:
        """The book as an immutable value, enough for `restore` to continue it exactly."""
        return BookSnapshot(
            symbol=self._symbol,
            input_offset=self._last_offset,
            sequence=self._chain.sequence,
            hash=self._chain.last_hash,
            next_trade_id=self._next_trade_id,
            bids=tuple(self.orders(Side.BUY)),
            asks=tuple(self.orders(Side.SELL)),
        )

    @classmethod
    def restore(cls, market: Market, snapshot: BookSnapshot) -> OrderBook:
        """A book of `market` in the state `snapshot` recorded.

        Raises:
            SnapshotError: the snapshot is not a consistent book of this market.
        """
        check_snapshot(market, snapshot)
        book = cls(market)
        book._chain = EventChain(market.symbol, snapshot.sequence, snapshot.hash)
        book._last_offset = snapshot.input_offset
        book._next_trade_id = snapshot.next_trade_id
        for saved in (*snapshot.bids, *snapshot.asks):
            book._rest(saved.placed(market.symbol), saved.remaining_quantity,
                       saved.filled_quote_quantity)  # fmt: skip
        return book


_ENDED: Final[dict[int, tuple[OrderStatus, RejectReason]]] = {
    _END_BOOK: (_EXPIRED, RejectReason.NO_LIQUIDITY),
    _END_FILLED: (_FILLED, _NO_REASON),
    _END_BUDGET: (_EXPIRED, RejectReason.INSUFFICIENT_FUNDS),
    _END_SELF: (_EXPIRED, _SELF_TRADE),
}
"""The taker's OrderDone status and reason by why it stopped (when it does not rest)."""
