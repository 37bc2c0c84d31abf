"""The matcher's events as balance deltas: a trade moves funds, an order done releases the rest.

A trade spends exactly its quote_quantity from the buyer's reservation and its quantity from
the seller's. The buyer receives the quantity in base minus its fee; the seller receives the
quote_quantity minus its fee; both fees go to the fee account, in the asset each received.
The taker pays the taker fee: when taker_side is BUY the buyer is the taker.

On a sharded deployment each shard applies the sides of the accounts it owns, and credits
the fee of each such side to its own copy of the fee account.
"""

from __future__ import annotations

from typing import Final

from ordermesh.events import OrderDone, TradeExecuted
from ordermesh.markets import Market
from ordermesh.model import FEE_ACCOUNT, AccountId, OrderStatus, Side, Symbol
from ubscore.core.accounts import LedgerState
from ubscore.core.errors import InvariantError
from ubscore.core.rules import owns

DONE_STATUSES: Final = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)
"""The statuses an order may leave the matcher with."""


class _Leg:
    """One side of a trade as this shard applies it."""

    __slots__ = ("account_id", "asset", "fee", "live", "order_id", "received", "spent")

    def __init__(
        self,
        state: LedgerState,
        market: Market,
        trade: TradeExecuted,
        side: Side,
        taker: bool,
    ) -> None:
        self.order_id = trade.taker_order_id if taker else trade.maker_order_id
        self.account_id = trade.taker_account_id if taker else trade.maker_account_id
        self.fee = trade.taker_fee if taker else trade.maker_fee
        if side is Side.BUY:
            self.spent, self.received, self.asset = (
                trade.quote_quantity,
                trade.quantity,
                market.base.code,
            )
        else:
            self.spent, self.received, self.asset = (
                trade.quantity,
                trade.quote_quantity,
                market.quote.code,
            )
        self.live = state.open_order_for(self.order_id, self.account_id, side, market.symbol)
        if self.live is not None and self.spent > self.live.remaining:
            raise InvariantError(
                f"order {self.order_id} would spend {self.spent} {self.live.asset}, but only "
                f"{self.live.remaining} is left of its reservation"
            )

    def settle(self, state: LedgerState) -> None:
        state.spend(self.order_id, self.live, self.spent)
        state.credit(self.account_id, self.asset, self.received - self.fee)
        state.credit(FEE_ACCOUNT, self.asset, self.fee)


def apply_trade(state: LedgerState, market: Market, trade: TradeExecuted) -> None:
    """Move the funds of one fill (the sides this shard owns); check everything first.

    Raises:
        InvariantError: the trade is malformed, names an order that is not open here (while
            live), or spends more than an order has left.
    """
    _check_trade(market, trade)
    config = state.config
    legs = [
        _Leg(state, market, trade, side, taker=side is trade.taker_side)
        for side, account_id in (
            (Side.BUY, _account_of(trade, Side.BUY)),
            (Side.SELL, _account_of(trade, Side.SELL)),
        )
        if owns(config, account_id)
    ]
    for leg in legs:
        leg.settle(state)


def _account_of(trade: TradeExecuted, side: Side) -> AccountId:
    return trade.taker_account_id if side is trade.taker_side else trade.maker_account_id


def _check_trade(market: Market, trade: TradeExecuted) -> None:
    if trade.quantity <= 0 or trade.price <= 0:
        raise InvariantError(f"trade {trade.trade_id} has no quantity or no price")
    if trade.quantity % market.lot_size or trade.price % market.tick_size:
        raise InvariantError(
            f"trade {trade.trade_id}: price {trade.price} or quantity {trade.quantity} is off "
            f"the {market.symbol} grid"
        )
    try:
        value = market.notional(trade.price, trade.quantity)
    except ArithmeticError as e:
        raise InvariantError(f"trade {trade.trade_id}: {e}") from e
    if value != trade.quote_quantity:
        raise InvariantError(
            f"trade {trade.trade_id}: quote_quantity {trade.quote_quantity} is not price x "
            f"quantity = {value}"
        )
    if trade.maker_order_id == trade.taker_order_id or trade.taker_side not in (
        Side.BUY,
        Side.SELL,
    ):
        raise InvariantError(f"trade {trade.trade_id} has one order on both sides or no side")
    buyer_fee, seller_fee = (
        (trade.taker_fee, trade.maker_fee)
        if trade.taker_side is Side.BUY
        else (trade.maker_fee, trade.taker_fee)
    )
    if not (0 <= buyer_fee <= trade.quantity and 0 <= seller_fee <= trade.quote_quantity):
        raise InvariantError(
            f"trade {trade.trade_id}: fees {buyer_fee} (buyer, base) and {seller_fee} "
            f"(seller, quote) must be within what each side receives"
        )


def apply_done(state: LedgerState, symbol: Symbol, done: OrderDone) -> None:
    """Release what is left of a finished order's reservation (if this shard owns it).

    Raises:
        InvariantError: a status that is not final, or an order that is not open (while live).
    """
    if done.status not in DONE_STATUSES:
        raise InvariantError(f"order {done.order_id} done with status {done.status!r}")
    if not owns(state.config, done.account_id):
        return
    live = state.open_order_for(done.order_id, done.account_id, None, symbol)
    state.close_order(done.order_id, live)
