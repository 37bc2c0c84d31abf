"""The rules a request must meet before anything is frozen, and what each order reserves.

A BUY reserves quote, a SELL base, and no fee is reserved: fees are charged in the asset
received (DESIGN §4). LIMIT BUY: price x quantity; MARKET BUY by quote budget: the budget;
MARKET BUY by quantity: all the available quote (there is no price to bound it, and the
matcher never spends more than the budget it is given); SELL: the quantity.
"""

from __future__ import annotations

import re
from typing import Final

from ordermesh import amounts
from ordermesh.amounts import INT64_MAX, AmountError
from ordermesh.events import NewOrder
from ordermesh.markets import AssetSpec, Market
from ordermesh.model import FEE_ACCOUNT, MAX_ACCOUNT_ID, Asset, OrderType, RejectReason, Side
from ubscore.core.errors import InsufficientFundsError, InvalidRequestError
from ubscore.core.values import ReserveRequest, UBSCoreConfig

CLIENT_ORDER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")
"""What a client_order_id may be: 1-36 letters, digits, '_' or '-'."""
REFERENCE_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")
"""What a funding reference_id may be: 1-128 printable ASCII characters, no spaces."""

ALL_AVAILABLE: Final = -1
"""`OrderRules.required_funds` of a MARKET BUY by quantity: all the available quote."""


def check_client_order_id(client_order_id: str) -> None:
    """Raise INVALID_CLIENT_ORDER_ID unless the id is 1-36 of [A-Za-z0-9_-]."""
    if CLIENT_ORDER_ID.fullmatch(client_order_id) is None:
        shown = client_order_id[:40] + ("..." if len(client_order_id) > 40 else "")
        raise InvalidRequestError(
            RejectReason.INVALID_CLIENT_ORDER_ID,
            f"client_order_id must be 1-36 of A-Z a-z 0-9 _ -, was {shown!r}",
            field="client_order_id",
        )


def check_reference_id(reference_id: str) -> None:
    """Raise INVALID_REFERENCE_ID unless the id is 1-128 printable ASCII characters."""
    if REFERENCE_ID.fullmatch(reference_id) is None:
        shown = reference_id[:40] + ("..." if len(reference_id) > 40 else "")
        raise InvalidRequestError(
            RejectReason.INVALID_REFERENCE_ID,
            f"reference_id must be 1-128 printable ASCII characters without spaces, was {shown!r}",
            field="reference_id",
        )


def owns(config: UBSCoreConfig, account_id: int) -> bool:
    """Whether this shard holds `account_id` (DESIGN §6: account mod shard count)."""
    return account_id % config.shard_count == config.shard_index


def check_account(config: UBSCoreConfig, account_id: int, *, trading: bool) -> None:
    """Raise INVALID_ACCOUNT for an id out of range, of another shard, or 0 when trading."""
    if not 0 <= account_id <= MAX_ACCOUNT_ID:
        problem = f"account_id must be 0..{MAX_ACCOUNT_ID}, was {account_id}"
    elif trading and account_id == FEE_ACCOUNT:
        problem = "account 0 is the fee account; it cannot place or cancel orders"
    elif not owns(config, account_id):
        problem = (
            f"account {account_id} belongs to shard {account_id % config.shard_count} of "
            f"{config.shard_count}; this is shard {config.shard_index}"
        )
    else:
        return
    raise InvalidRequestError(RejectReason.INVALID_ACCOUNT, problem, field="account_id")


_LIMIT: Final = OrderType.LIMIT
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL


class OrderRules:
    """One market's order rules, flattened for the reserve hot path.

    The grid checks are done inline first; only when one fails are the `Market.check_*`
    methods called, and they raise with the message naming the field and rule. If they
    did not raise, the fast check was stricter than the market's and the market's answer
    stands, so the market stays the one definition of the rules.
    """

    __slots__ = (
        "base",
        "lot_size",
        "market",
        "min_notional",
        "min_quantity",
        "quote",
        "tick_size",
        "unit",
    )

    def __init__(self, market: Market) -> None:
        self.market = market
        self.base = market.base.code
        self.quote = market.quote.code
        self.tick_size = market.tick_size
        self.lot_size = market.lot_size
        self.min_quantity = market.min_quantity
        self.min_notional = market.min_notional
        self.unit = amounts.pow10(market.base.scale)

    def required_funds(self, request: ReserveRequest) -> tuple[Asset, int]:
        """Validate the order's amounts; return the asset to freeze and how much.

        Returns:
            (asset, atoms), or (quote, ALL_AVAILABLE) for a MARKET BUY by quantity.

        Raises:
            AmountError: a price, quantity or budget off the grid, too small or too large.
            InvalidRequestError: fields that do not go together (a price on a MARKET order).
        """
        if request.order_type is _LIMIT:
            if request.quote_quantity != 0:
                _no_quote_quantity(request, self.market, "a LIMIT order")
            value = self._limit_notional(request.price, request.quantity)
            if request.side is _BUY:
                return self.quote, value
            return self.base, request.quantity
        market = self.market
        _check_market_order(request, market)
        if request.side is _SELL:
            market.check_quantity(request.quantity)
            return self.base, request.quantity
        return self.quote, _market_buy(request, market)

    def _limit_notional(self, price: int, quantity: int) -> int:
        if (
            0 < price <= INT64_MAX
            and 0 < quantity <= INT64_MAX
            and price % self.tick_size == 0
            and quantity % self.lot_size == 0
            and quantity >= self.min_quantity
        ):
            value, rest = divmod(price * quantity, self.unit)
            if rest == 0 and self.min_notional <= value <= INT64_MAX:
                return value
        market = self.market
        market.check_price(price)
        market.check_quantity(quantity)
        return market.check_notional(price, quantity)


def _check_market_order(request: ReserveRequest, market: Market) -> None:
    if request.price != 0:
        raise InvalidRequestError(
            RejectReason.INVALID_PRICE,
            f"price must be empty for a MARKET order, was {market.format_price(request.price)}",
            field="price",
        )
    if request.post_only:
        raise InvalidRequestError(
            RejectReason.INVALID_POST_ONLY,
            "post_only needs a LIMIT order: a MARKET order always takes",
            field="post_only",
        )
    if request.side is _SELL:
        _no_quote_quantity(request, market, "a MARKET SELL")


def _market_buy(request: ReserveRequest, market: Market) -> int:
    budget, quantity = request.quote_quantity, request.quantity
    if budget and quantity:
        raise InvalidRequestError(
            RejectReason.INVALID_QUOTE_QUANTITY,
            "a MARKET BUY takes quantity or quote_quantity, not both",
            field="quote_quantity",
        )
    if quantity:
        market.check_quantity(quantity)
        return ALL_AVAILABLE
    if budget == 0:
        raise InvalidRequestError(
            RejectReason.INVALID_QUANTITY,
            "a MARKET BUY needs a quantity or a quote_quantity",
            field="quantity",
        )
    if budget < 0:
        raise InvalidRequestError(
            RejectReason.INVALID_QUOTE_QUANTITY,
            f"quote_quantity must be positive, was {market.format_quote(budget)}",
            field="quote_quantity",
        )
    amounts.check_int64(budget, field="quote_quantity")
    if budget < market.min_notional:
        raise AmountError(
            RejectReason.BELOW_MIN_NOTIONAL,
            f"quote_quantity {market.format_quote(budget)} is below the minimum notional "
            f"{market.format_quote(market.min_notional)} {market.quote.code}",
            field="quote_quantity",
        )
    return budget


def _no_quote_quantity(request: ReserveRequest, market: Market, what: str) -> None:
    if request.quote_quantity != 0:
        raise InvalidRequestError(
            RejectReason.INVALID_QUOTE_QUANTITY,
            f"quote_quantity is only for a MARKET BUY; it must be empty for {what}, was "
            f"{market.format_quote(request.quote_quantity)}",
            field="quote_quantity",
        )


def reserved_by(order: NewOrder, market: Market) -> tuple[AssetSpec, int]:
    """What a logged order froze: the rule `OrderRules.required_funds` applied, read back.

    Raises:
        ArithmeticError: a LIMIT BUY whose price x quantity is off the grid (never logged).
    """
    if order.side is Side.SELL:
        return market.base, order.quantity
    if order.order_type is OrderType.MARKET:
        return market.quote, order.quote_budget
    return market.quote, market.notional(order.price, order.quantity)


def insufficient_funds(
    request: ReserveRequest, asset: Asset, scale: int, amount: int, available: int
) -> InsufficientFundsError:
    """The refusal of an order whose reservation is more than is available (0: all of none)."""
    have = f"account {request.account_id} has {amounts.format_atoms(available, scale)} {asset}"
    if amount == 0:
        message = f"a MARKET BUY by quantity freezes all the available {asset}; {have}"
    else:
        message = (
            f"the order needs {amounts.format_atoms(amount, scale)} {asset} frozen; "
            f"{have} available"
        )
    return InsufficientFundsError(request.account_id, asset, amount, available, message)
