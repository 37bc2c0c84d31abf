"""Fill-or-kill: whether an order would fill completely, decided without touching the book.

`fills_completely` walks the other side exactly as `OrderBook._take` would match it (same
priority, same self-trade prevention, same budget arithmetic) and says whether the order
would end FILLED; the oracle test holds the two to each other.
"""

from __future__ import annotations

from matcher.core.levels import NO_LIMIT, UNBOUNDED, BookSide
from ordermesh.events import NewOrder
from ordermesh.model import OrderType, SelfTradePrevention, Side


def fills_completely(order: NewOrder, side: BookSide, unit: int, lot: int) -> bool:
    """Whether `order` would end FILLED against `side` (the other side of the book).

    Args:
        order: the taker.
        side: the side it would take from.
        unit: base atoms per whole base unit (10**base scale), to price a quantity.
        lot: the lot size, to round what a budget affords.
    """
    market = order.order_type == OrderType.MARKET
    budget = order.quote_budget if market and order.side == Side.BUY else -1
    limit = NO_LIMIT if market else side.sign * order.price
    prevention = order.self_trade_prevention
    wanted = order.quantity or UNBOUNDED
    filled = 0
    for level in side.levels_best_first():
        if side.sign * level.price < limit:
            break
        for maker in level.live():
            if maker.order.account_id == order.account_id and prevention != (
                SelfTradePrevention.NONE
            ):
                if prevention == SelfTradePrevention.EXPIRE_MAKER:
                    continue  # expired, and matching goes on
                return False  # EXPIRE_TAKER or EXPIRE_BOTH: the taker stops here
            quantity = min(maker.remaining, wanted)
            if budget >= 0:
                affordable = budget * unit // level.price // lot * lot
                if affordable < quantity:  # the budget runs out at this maker
                    return order.quantity == 0 and filled + affordable > 0
                budget -= level.price * quantity // unit
            filled += quantity
            wanted -= quantity
            if not wanted:
                return True
            if budget == 0:
                return order.quantity == 0
    return False
