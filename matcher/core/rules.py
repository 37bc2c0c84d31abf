"""Which NewOrders the matcher can take at all, judged on the order and its market alone.

The gateway validated the order already; the matcher checks again what its own invariants
rest on (prices on the tick grid and quantities on the lot grid keep every notional exact;
types and options must fit together), so that a command it cannot carry out becomes a
rejection with a reason instead of a wrong book or a crash.
"""

from __future__ import annotations

from typing import Final

from ordermesh.amounts import INT64_MAX, pow10
from ordermesh.events import NewOrder
from ordermesh.markets import Market
from ordermesh.model import OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce

MAX_CLIENT_ORDER_ID: Final = 64
"""The longest client_order_id taken (the public API allows 36)."""

ACCEPTABLE: Final = RejectReason.UNSPECIFIED
"""What `OrderRules.check` returns for an order it finds nothing wrong with."""

# Enum members as module constants: an enum attribute lookup costs more than a comparison.
_LIMIT: Final = OrderType.LIMIT
_MARKET: Final = OrderType.MARKET
_SELL: Final = Side.SELL
_GTC: Final = TimeInForce.GTC
_SIDES: Final = frozenset(Side)
_ORDER_TYPES: Final = frozenset(OrderType)
_TIMES_IN_FORCE: Final = frozenset(TimeInForce)
_PREVENTIONS: Final = frozenset(SelfTradePrevention)


class OrderRules:
    """The order checks of one market, all in atoms."""

    __slots__ = ("_lot", "_min_notional", "_min_quantity", "_tick", "_unit")

    def __init__(self, market: Market) -> None:
        self._tick = market.tick_size
        self._lot = market.lot_size
        self._min_quantity = market.min_quantity
        self._min_notional = market.min_notional
        self._unit = pow10(market.base.scale)

    def check(self, order: NewOrder) -> RejectReason:  # noqa: C901, PLR0911, PLR0912 - a rule a line
        """The reason `order` cannot be taken, or ACCEPTABLE.

        Book-dependent refusals (duplicate ids, post-only, fill-or-kill) are the book's.
        """
        if order.order_id <= 0:
            return RejectReason.INVALID_ORDER_ID
        if len(order.client_order_id) > MAX_CLIENT_ORDER_ID:
            return RejectReason.INVALID_CLIENT_ORDER_ID
        if order.side not in _SIDES:
            return RejectReason.INVALID_SIDE
        if order.time_in_force not in _TIMES_IN_FORCE:
            return RejectReason.INVALID_TIME_IN_FORCE
        if order.self_trade_prevention not in _PREVENTIONS:
            return RejectReason.INVALID_SELF_TRADE_PREVENTION
        if order.order_type not in _ORDER_TYPES:
            return RejectReason.INVALID_ORDER_TYPE
        if order.post_only and (order.order_type != _LIMIT or order.time_in_force != _GTC):
            return RejectReason.INVALID_POST_ONLY
        if order.order_type != _LIMIT:
            return self._check_market(order)
        price, quantity = order.price, order.quantity
        if price <= 0 or price > INT64_MAX or price % self._tick:
            return RejectReason.INVALID_PRICE
        if quantity <= 0 or quantity > INT64_MAX or quantity % self._lot:
            return RejectReason.INVALID_QUANTITY
        if quantity < self._min_quantity:
            return RejectReason.BELOW_MIN_QUANTITY
        if order.quote_budget != 0:
            return RejectReason.INVALID_QUOTE_QUANTITY
        value = price * quantity // self._unit  # exact on the grid (ordermesh.amounts.notional)
        if value > INT64_MAX:
            return RejectReason.AMOUNT_OVERFLOW
        if value < self._min_notional:
            return RejectReason.BELOW_MIN_NOTIONAL
        return ACCEPTABLE

    def _check_market(self, order: NewOrder) -> RejectReason:  # noqa: PLR0911 - one per rule
        if order.price != 0:
            return RejectReason.INVALID_PRICE
        quantity = order.quantity
        if order.side == _SELL:
            if order.quote_budget != 0:
                return RejectReason.INVALID_QUOTE_QUANTITY
        else:
            budget = order.quote_budget
            if budget <= 0 or budget > INT64_MAX:
                return RejectReason.INVALID_QUOTE_QUANTITY
            if budget < self._min_notional:
                return RejectReason.BELOW_MIN_NOTIONAL
            if quantity == 0:
                return ACCEPTABLE  # a MARKET BUY by budget alone
        if quantity <= 0 or quantity > INT64_MAX or quantity % self._lot:
            return RejectReason.INVALID_QUANTITY
        if quantity < self._min_quantity:
            return RejectReason.BELOW_MIN_QUANTITY
        return ACCEPTABLE
