"""An independent check of the book's invariants, command by command, from its events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from matcher.core import OrderBook, OrderSnapshot, verify_chain
from ordermesh import amounts
from ordermesh.events import (
    CancelOrder,
    CancelRejected,
    EngineEvent,
    NewOrder,
    OrderAccepted,
    OrderCommand,
    OrderDone,
    TradeExecuted,
)
from ordermesh.model import OrderStatus, OrderType, Side, TimeInForce


class Audit:
    """Applies commands to a book and asserts every invariant the matcher promises."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.market = book.market
        self.offset = 0
        self.events: list[EngineEvent] = []
        self.accepted: dict[int, NewOrder] = {}
        self.filled: defaultdict[int, int] = defaultdict(int)
        self.filled_quote: defaultdict[int, int] = defaultdict(int)

    def run(self, commands: list[OrderCommand]) -> None:
        for command in commands:
            self.step(command)
        self.finish()

    def step(self, command: OrderCommand) -> list[EngineEvent]:
        book = self.book
        before = {Side.BUY: book.orders(Side.BUY), Side.SELL: book.orders(Side.SELL)}
        events = book.apply(command, self.offset)
        self.offset += 1
        self.events.extend(events)
        bodies = [event.body for event in events]
        assert events, "every command must cause at least one event"
        assert len({(e.input_offset, e.hash) for e in events}) == 1
        if isinstance(command, CancelOrder):
            self.check_cancel(command, bodies)
        else:
            self.check_new_order(command, bodies, before)
        self.check_uncrossed()
        return events

    def check_uncrossed(self) -> None:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}"

    def check_cancel(self, command: CancelOrder, bodies: Sequence[object]) -> None:
        (body,) = bodies
        if isinstance(body, CancelRejected):
            assert (body.order_id, body.account_id, body.client_order_id) == (
                command.order_id,
                command.account_id,
                command.client_order_id,
            )
            return
        assert isinstance(body, OrderDone)
        assert body.status == OrderStatus.CANCELED
        assert body.account_id == command.account_id  # never someone else's order
        assert body.order_id not in self.book
        self.check_done(body)

    def check_new_order(  # noqa: C901, PLR0912
        self, order: NewOrder, bodies: Sequence[object], before: dict[Side, list[OrderSnapshot]]
    ) -> None:
        first = bodies[0]
        if isinstance(first, OrderDone):
            assert bodies == [first]
            assert first.status == OrderStatus.REJECTED
            assert first.filled_quantity == 0
            return
        assert isinstance(first, OrderAccepted)
        self.accepted[order.order_id] = order
        self.filled[order.order_id] = self.filled_quote[order.order_id] = 0
        queue = before[Side.SELL if order.side == Side.BUY else Side.BUY]
        touched: list[int] = []
        taker_done: OrderDone | None = None
        for body in bodies[1:]:
            if isinstance(body, TradeExecuted):
                self.check_trade(order, body, queue)
                if not touched or touched[-1] != body.maker_order_id:
                    touched.append(body.maker_order_id)
            elif isinstance(body, OrderDone) and body.order_id != order.order_id:
                if body.status == OrderStatus.EXPIRED:
                    touched.append(body.order_id)
                self.check_done(body)
            else:
                assert isinstance(body, OrderDone)
                assert body is bodies[-1], "the taker's OrderDone comes last"
                taker_done = body
        # Price-time priority: the makers met are the front of the queue, in order, and all
        # but the last are gone.
        assert touched == [o.order_id for o in queue[: len(touched)]]
        assert all(maker not in self.book for maker in touched[:-1])
        if order.post_only:
            assert len(bodies) == 1
        if order.order_type == OrderType.MARKET or order.time_in_force != TimeInForce.GTC:
            assert taker_done is not None, "only a LIMIT GTC order may rest"
        if taker_done is None:
            resting = self.book.order(order.order_id)
            assert resting is not None
            assert resting.filled_quantity == self.filled[order.order_id]
            return
        assert order.order_id not in self.book
        self.check_done(taker_done)
        if order.time_in_force == TimeInForce.FOK:
            assert taker_done.status == OrderStatus.FILLED
            if order.quantity:
                assert taker_done.filled_quantity == order.quantity
        if order.order_type == OrderType.MARKET and order.side == Side.BUY:
            assert taker_done.filled_quote_quantity <= order.quote_budget

    def check_trade(
        self, taker: NewOrder, trade: TradeExecuted, queue: list[OrderSnapshot]
    ) -> None:
        maker = self.accepted[trade.maker_order_id]
        assert trade.taker_order_id == taker.order_id
        assert trade.taker_side == taker.side != maker.side
        assert (trade.maker_account_id, trade.taker_account_id) == (
            maker.account_id,
            taker.account_id,
        )
        assert trade.price == maker.price, "fills are at the maker's price"
        if taker.order_type == OrderType.LIMIT:
            assert (
                trade.price <= taker.price
                if taker.side == Side.BUY
                else trade.price >= (taker.price)
            )
        assert trade.quantity > 0
        assert trade.quantity % self.market.lot_size == 0
        quote = amounts.notional(trade.price, trade.quantity, self.market.base.scale)
        assert trade.quote_quantity == quote
        m = self.market
        buyer_fee = amounts.fee(
            trade.quantity, m.taker_fee_bps if taker.side == Side.BUY else m.maker_fee_bps
        )
        seller_fee = amounts.fee(
            quote, m.maker_fee_bps if taker.side == Side.BUY else m.taker_fee_bps
        )
        expected = (seller_fee, buyer_fee) if taker.side == Side.BUY else (buyer_fee, seller_fee)
        assert (trade.maker_fee, trade.taker_fee) == expected
        assert any(o.order_id == trade.maker_order_id for o in queue)
        for order_id in (trade.maker_order_id, trade.taker_order_id):
            self.filled[order_id] += trade.quantity
            self.filled_quote[order_id] += trade.quote_quantity

    def check_done(self, done: OrderDone) -> None:
        order = self.accepted[done.order_id]
        assert done.filled_quantity == self.filled[done.order_id]
        assert done.filled_quote_quantity == self.filled_quote[done.order_id]
        if order.quantity:
            assert done.filled_quantity + done.remaining_quantity == order.quantity
        else:
            assert done.remaining_quantity == 0
        if done.status == OrderStatus.FILLED and order.quantity:
            assert done.remaining_quantity == 0
        del self.accepted[done.order_id]

    def finish(self) -> None:
        for side in Side:
            for resting in self.book.orders(side):
                assert resting.filled_quantity == self.filled[resting.order_id]
                assert resting.filled_quote_quantity == self.filled_quote[resting.order_id]
                assert resting.order_id in self.accepted
        assert len(self.book) == len(self.accepted)
        assert verify_chain(self.events) == (self.book.sequence, self.book.last_hash)
