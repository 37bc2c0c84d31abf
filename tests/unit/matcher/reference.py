"""A deliberately naive order book: the matcher's specification, written for clarity only.

A flat list of resting orders, re-sorted for every taker; fill-or-kill decided by running
the order on a deep copy; every amount through ordermesh.amounts; every event made by its
dataclass constructor; the hash through matcher.core.verify. The real book must produce
exactly the same events (tests/unit/matcher/test_oracle.py).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from matcher.core import GENESIS_HASH, command_hash
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
from ordermesh.markets import Market
from ordermesh.model import (
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradeId,
)

MAX_CLIENT_ORDER_ID = 64


@dataclass
class Resting:
    order: NewOrder
    remaining: int
    filled_quote: int
    arrival: int


class ReferenceBook:
    def __init__(self, market: Market) -> None:
        self.market = market
        self.resting: list[Resting] = []
        self.arrivals = 0
        self.sequence = 0
        self.hash = GENESIS_HASH
        self.next_trade_id = 1
        self.last_offset = -1

    # -- the envelope and hash ---------------------------------------------------------

    def apply(self, command: OrderCommand, offset: int) -> list[EngineEvent]:
        if offset <= self.last_offset:
            return []
        self.last_offset = offset
        bodies: list[Any] = []
        if isinstance(command, NewOrder):
            self.new_order(command, bodies)
        else:
            self.cancel(command, bodies)
        events = [
            EngineEvent(
                symbol=self.market.symbol,
                sequence=self.sequence + i + 1,
                input_offset=offset,
                timestamp_ns=command.timestamp_ns,
                hash=b"",
                body=body,
            )
            for i, body in enumerate(bodies)
        ]
        digest = command_hash(self.hash, events)
        self.hash = digest
        self.sequence += len(events)
        return [dataclasses.replace(event, hash=digest) for event in events]

    # -- orders --------------------------------------------------------------------------

    def validate(self, order: NewOrder) -> RejectReason:  # noqa: C901, PLR0911, PLR0912
        m = self.market
        if order.order_id <= 0:
            return RejectReason.INVALID_ORDER_ID
        if len(order.client_order_id) > MAX_CLIENT_ORDER_ID:
            return RejectReason.INVALID_CLIENT_ORDER_ID
        if order.post_only and (
            order.order_type != OrderType.LIMIT or order.time_in_force != TimeInForce.GTC
        ):
            return RejectReason.INVALID_POST_ONLY
        if order.order_type == OrderType.LIMIT:
            if order.price <= 0 or order.price % m.tick_size or order.price > amounts.INT64_MAX:
                return RejectReason.INVALID_PRICE
            reason = self.check_quantity(order.quantity)
            if reason:
                return reason
            if order.quote_budget:
                return RejectReason.INVALID_QUOTE_QUANTITY
            value = amounts.notional(order.price, order.quantity, m.base.scale)
            if value > amounts.INT64_MAX:
                return RejectReason.AMOUNT_OVERFLOW
            if value < m.min_notional:
                return RejectReason.BELOW_MIN_NOTIONAL
            return RejectReason.UNSPECIFIED
        if order.price != 0:
            return RejectReason.INVALID_PRICE
        if order.side == Side.SELL:
            if order.quote_budget:
                return RejectReason.INVALID_QUOTE_QUANTITY
            return self.check_quantity(order.quantity)
        if order.quote_budget <= 0 or order.quote_budget > amounts.INT64_MAX:
            return RejectReason.INVALID_QUOTE_QUANTITY
        if order.quote_budget < m.min_notional:
            return RejectReason.BELOW_MIN_NOTIONAL
        if order.quantity == 0:
            return RejectReason.UNSPECIFIED
        return self.check_quantity(order.quantity)

    def check_quantity(self, quantity: int) -> RejectReason:
        m = self.market
        if quantity <= 0 or quantity % m.lot_size or quantity > amounts.INT64_MAX:
            return RejectReason.INVALID_QUANTITY
        if quantity < m.min_quantity:
            return RejectReason.BELOW_MIN_QUANTITY
        return RejectReason.UNSPECIFIED

    def refusal(self, order: NewOrder) -> RejectReason:
        reason = self.validate(order)
        if reason:
            return reason
        for resting in self.resting:
            if resting.order.order_id == order.order_id or (
                order.client_order_id
                and resting.order.account_id == order.account_id
                and resting.order.client_order_id == order.client_order_id
            ):
                return RejectReason.DUPLICATE_ORDER_ID
        if order.post_only and any(
            self.crosses(order, r.order.price) for r in self.opposite(order)
        ):
            return RejectReason.POST_ONLY_WOULD_TAKE
        if order.time_in_force == TimeInForce.FOK:
            trial = copy.deepcopy(self)
            outcome: list[Any] = []
            trial.take_in(order, outcome)
            done = outcome[-1]
            if not (isinstance(done, OrderDone) and done.order_id == order.order_id) or (
                done.status != OrderStatus.FILLED
            ):
                return RejectReason.FOK_NOT_FILLABLE
        return RejectReason.UNSPECIFIED

    def new_order(self, order: NewOrder, bodies: list[Any]) -> None:
        reason = self.refusal(order)
        if reason:
            bodies.append(
                OrderDone(
                    order_id=order.order_id,
                    account_id=order.account_id,
                    client_order_id=order.client_order_id,
                    status=OrderStatus.REJECTED,
                    reason=reason,
                    filled_quantity=0,
                    remaining_quantity=order.quantity,
                    filled_quote_quantity=0,
                    side=order.side,
                    price=order.price,
                )
            )
            return
        self.take_in(order, bodies)

    def take_in(self, order: NewOrder, bodies: list[Any]) -> None:
        bodies.append(
            OrderAccepted(
                order_id=order.order_id,
                account_id=order.account_id,
                client_order_id=order.client_order_id,
                side=order.side,
                order_type=order.order_type,
                time_in_force=order.time_in_force,
                price=order.price,
                quantity=order.quantity,
                quote_budget=order.quote_budget,
            )
        )
        filled, filled_quote, end = self.match(order, bodies)
        if order.quantity == 0:
            remaining = 0
            if end == "budget" and filled:
                status, reason = OrderStatus.FILLED, RejectReason.UNSPECIFIED
            else:
                status, reason = self.ending(end)
        else:
            remaining = order.quantity - filled
            if (
                end == "book"
                and order.order_type == OrderType.LIMIT
                and order.time_in_force == TimeInForce.GTC
            ):
                self.arrivals += 1
                self.resting.append(Resting(order, remaining, filled_quote, self.arrivals))
                return
            status, reason = self.ending(end)
        bodies.append(
            OrderDone(
                order_id=order.order_id,
                account_id=order.account_id,
                client_order_id=order.client_order_id,
                status=status,
                reason=reason,
                filled_quantity=filled,
                remaining_quantity=remaining,
                filled_quote_quantity=filled_quote,
                side=order.side,
                price=order.price,
            )
        )

    @staticmethod
    def ending(end: str) -> tuple[OrderStatus, RejectReason]:
        return {
            "filled": (OrderStatus.FILLED, RejectReason.UNSPECIFIED),
            "book": (OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY),
            "budget": (OrderStatus.EXPIRED, RejectReason.INSUFFICIENT_FUNDS),
            "self": (OrderStatus.EXPIRED, RejectReason.SELF_TRADE_PREVENTED),
        }[end]

    def opposite(self, order: NewOrder) -> list[Resting]:
        others = [r for r in self.resting if r.order.side != order.side]
        if order.side == Side.BUY:
            return sorted(others, key=lambda r: (r.order.price, r.arrival))
        return sorted(others, key=lambda r: (-r.order.price, r.arrival))

    @staticmethod
    def crosses(order: NewOrder, price: int) -> bool:
        if order.order_type == OrderType.MARKET:
            return True
        return price <= order.price if order.side == Side.BUY else price >= order.price

    def match(  # noqa: C901, PLR0911, PLR0912 - the whole rule book in one readable place
        self, order: NewOrder, bodies: list[Any]
    ) -> tuple[int, int, str]:
        m = self.market
        wanted = order.quantity if order.quantity else None
        budget = (
            order.quote_budget
            if order.order_type == OrderType.MARKET and order.side == Side.BUY
            else None
        )
        filled = filled_quote = 0
        while True:
            makers = self.opposite(order)  # re-sorted every step: naive on purpose
            if not makers:
                return filled, filled_quote, "book"
            maker = makers[0]
            price = maker.order.price
            if not self.crosses(order, price):
                return filled, filled_quote, "book"
            stp = order.self_trade_prevention
            if maker.order.account_id == order.account_id and stp != SelfTradePrevention.NONE:
                if stp == SelfTradePrevention.EXPIRE_TAKER:
                    return filled, filled_quote, "self"
                self.remove(maker, OrderStatus.EXPIRED, RejectReason.SELF_TRADE_PREVENTED, bodies)
                if stp == SelfTradePrevention.EXPIRE_BOTH:
                    return filled, filled_quote, "self"
                continue
            quantity = maker.remaining if wanted is None else min(maker.remaining, wanted)
            if budget is not None:
                affordable = amounts.max_quantity_for(budget, price, m.base.scale)
                quantity = min(quantity, affordable // m.lot_size * m.lot_size)
                if quantity == 0:
                    return filled, filled_quote, "budget"
            quote = amounts.notional(price, quantity, m.base.scale)
            buyer_fee_bps, seller_fee_bps = (
                (m.taker_fee_bps, m.maker_fee_bps)
                if order.side == Side.BUY
                else (m.maker_fee_bps, m.taker_fee_bps)
            )
            buyer_fee = amounts.fee(quantity, buyer_fee_bps)
            seller_fee = amounts.fee(quote, seller_fee_bps)
            taker_fee, maker_fee = (
                (buyer_fee, seller_fee) if order.side == Side.BUY else (seller_fee, buyer_fee)
            )
            bodies.append(
                TradeExecuted(
                    trade_id=TradeId(self.next_trade_id),
                    maker_order_id=maker.order.order_id,
                    taker_order_id=order.order_id,
                    maker_account_id=maker.order.account_id,
                    taker_account_id=order.account_id,
                    taker_side=order.side,
                    price=price,
                    quantity=quantity,
                    quote_quantity=quote,
                    maker_fee=maker_fee,
                    taker_fee=taker_fee,
                )
            )
            self.next_trade_id += 1
            maker.remaining -= quantity
            maker.filled_quote += quote
            filled += quantity
            filled_quote += quote
            if maker.remaining == 0:
                self.remove(maker, OrderStatus.FILLED, RejectReason.UNSPECIFIED, bodies)
            if wanted is not None:
                wanted -= quantity
                if wanted == 0:
                    return filled, filled_quote, "filled"
            if budget is not None:
                budget -= quote
                if budget == 0:
                    return filled, filled_quote, "budget"

    def remove(
        self, maker: Resting, status: OrderStatus, reason: RejectReason, bodies: list[Any]
    ) -> None:
        self.resting.remove(maker)
        bodies.append(
            OrderDone(
                order_id=maker.order.order_id,
                account_id=maker.order.account_id,
                client_order_id=maker.order.client_order_id,
                status=status,
                reason=reason,
                filled_quantity=maker.order.quantity - maker.remaining,
                remaining_quantity=maker.remaining,
                filled_quote_quantity=maker.filled_quote,
                side=maker.order.side,
                price=maker.order.price,
            )
        )

    # -- cancels -------------------------------------------------------------------------

    def cancel(self, command: CancelOrder, bodies: list[Any]) -> None:
        for resting in self.resting:
            order = resting.order
            named = (
                order.order_id == command.order_id
                if command.order_id
                else bool(command.client_order_id)
                and order.client_order_id == command.client_order_id
                and order.account_id == command.account_id
            )
            if named and order.account_id == command.account_id:
                self.remove(resting, OrderStatus.CANCELED, RejectReason.UNSPECIFIED, bodies)
                return
        bodies.append(
            CancelRejected(
                order_id=command.order_id,
                account_id=command.account_id,
                client_order_id=command.client_order_id,
                reason=RejectReason.UNKNOWN_ORDER,
            )
        )
