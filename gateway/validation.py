"""PlaceOrder and CancelOrder requests checked field by field before anything goes upstream.

`gateway.arguments` checks the queries and funding calls the same way. Every function here
is pure: a request message in, validated atoms and enums out, or an `OrdermeshError` whose
reason and `field` name what is wrong (INVALID_ARGUMENT for every validation reason, see
`ordermesh.grpcx.errors`). Decimal strings go through the market's own parsers
(`Market.parse_*`, DESIGN §4), so the gateway and the cores share one definition of a valid
price, quantity or budget.

Defaults of the contract: time_in_force GTC for LIMIT and IOC for MARKET,
self_trade_prevention EXPIRE_TAKER, response_type ACK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeVar

from ordermesh.amounts import AmountError
from ordermesh.markets import Market, MarketTable
from ordermesh.model import (
    ClientOrderId,
    OrderId,
    OrdermeshError,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    member_of,
)
from ordermesh.v1 import common_pb2, gateway_pb2

CLIENT_ORDER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")
"""A client_order_id: 1 to 36 letters, digits, '_' or '-'."""
_E = TypeVar("_E", bound=IntEnum)
_SHOWN: Final = 40  # characters of a bad identifier repeated in a message


class ResponseType(IntEnum):
    """When PlaceOrder and CancelOrder answer (the proto's numbers)."""

    ACK = 1
    RESULT = 2


@dataclass(frozen=True, slots=True)
class ValidOrder:
    """A PlaceOrderRequest with every field checked and every default applied."""

    market: Market
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """Quote atoms per whole base unit; 0 for MARKET."""
    quantity: int
    """Base atoms; 0 for a MARKET BUY by quote budget."""
    quote_quantity: int
    """MARKET BUY by budget only: quote atoms to spend; else 0."""
    client_order_id: ClientOrderId
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    response_type: ResponseType


@dataclass(frozen=True, slots=True)
class ValidCancel:
    """A CancelOrderRequest: the market, the order (by id, else by client id), when to answer."""

    market: Market
    order_id: OrderId
    client_order_id: ClientOrderId
    response_type: ResponseType


def _invalid(reason: RejectReason, field: str, message: str) -> OrdermeshError:
    return OrdermeshError(reason, message, field=field)


def _shown(text: str) -> str:
    return repr(text[:_SHOWN] + ("..." if len(text) > _SHOWN else ""))


def decode_enum(
    value: int,
    enum: type[_E],
    proto_enum: Any,
    field: str,
    reason: RejectReason,
    *,
    default: _E | None = None,
) -> _E:
    """The core enum for a proto enum number; `default` for UNSPECIFIED when there is one.

    Raises:
        OrdermeshError: `reason` naming `field`, for a missing value or an unknown number.
    """
    if value == 0 and default is not None:
        return default
    if value != 0:
        member = member_of(enum, value)
        if member is not None:
            return member
    allowed = ", ".join(proto_enum.Name(member.value) for member in enum)
    if value == 0:
        raise _invalid(reason, field, f"{field} is required: one of {allowed}")
    shown = proto_enum.Name(value) if value in proto_enum.values() else str(value)
    raise _invalid(reason, field, f"{field} must be one of {allowed}, was {shown}")


def check_client_order_id(text: str, field: str = "client_order_id") -> ClientOrderId:
    """`text` as a ClientOrderId if it is 1-36 of [A-Za-z0-9_-].

    Raises:
        OrdermeshError: INVALID_CLIENT_ORDER_ID naming `field`.
    """
    if CLIENT_ORDER_ID.fullmatch(text) is None:
        rule = "1 to 36 of A-Z a-z 0-9 _ -"
        message = f"{field} is required: {rule}" if not text else f"{field} must be {rule}"
        if text:
            message += f", was {_shown(text)}"
        raise _invalid(RejectReason.INVALID_CLIENT_ORDER_ID, field, message)
    return ClientOrderId(text)


def response_type(value: int) -> ResponseType:
    """The response_type of a PlaceOrder or CancelOrder, ACK when unspecified."""
    return decode_enum(
        value,
        ResponseType,
        common_pb2.ResponseType,
        "response_type",
        RejectReason.INVALID_RESPONSE_TYPE,
        default=ResponseType.ACK,
    )


# -- PlaceOrder ------------------------------------------------------------------------------


def place_order(request: gateway_pb2.PlaceOrderRequest, markets: MarketTable) -> ValidOrder:
    """Check every field of a PlaceOrderRequest and apply the contract's defaults.

    Raises:
        OrdermeshError: the first field found wrong, with its reason and name.
    """
    market = markets.market(request.symbol)
    side = decode_enum(request.side, Side, common_pb2.Side, "side", RejectReason.INVALID_SIDE)
    order_type = decode_enum(
        request.order_type,
        OrderType,
        common_pb2.OrderType,
        "order_type",
        RejectReason.INVALID_ORDER_TYPE,
    )
    time_in_force = _time_in_force(request.time_in_force, order_type)
    prevention = decode_enum(
        request.self_trade_prevention,
        SelfTradePrevention,
        common_pb2.SelfTradePrevention,
        "self_trade_prevention",
        RejectReason.INVALID_SELF_TRADE_PREVENTION,
        default=SelfTradePrevention.EXPIRE_TAKER,
    )
    answer = response_type(request.response_type)
    client_order_id = check_client_order_id(request.client_order_id)
    if request.post_only and (order_type is not OrderType.LIMIT or time_in_force is not _GTC):
        raise _invalid(
            RejectReason.INVALID_POST_ONLY,
            "post_only",
            "post_only needs a LIMIT GTC order: it may only rest, never take, was "
            f"{order_type.name} {time_in_force.name}",
        )
    if order_type is OrderType.LIMIT:
        price, quantity, budget = _limit_amounts(request, market)
    else:
        price, quantity, budget = _market_amounts(request, market, side)
    return ValidOrder(
        market=market,
        side=side,
        order_type=order_type,
        time_in_force=time_in_force,
        price=price,
        quantity=quantity,
        quote_quantity=budget,
        client_order_id=client_order_id,
        post_only=request.post_only,
        self_trade_prevention=prevention,
        response_type=answer,
    )


_GTC: Final = TimeInForce.GTC


def _time_in_force(value: int, order_type: OrderType) -> TimeInForce:
    default = _GTC if order_type is OrderType.LIMIT else TimeInForce.IOC
    time_in_force = decode_enum(
        value,
        TimeInForce,
        common_pb2.TimeInForce,
        "time_in_force",
        RejectReason.INVALID_TIME_IN_FORCE,
        default=default,
    )
    if order_type is OrderType.MARKET and time_in_force is _GTC:
        raise _invalid(
            RejectReason.INVALID_TIME_IN_FORCE,
            "time_in_force",
            "time_in_force GTC does not fit a MARKET order, which never rests: use IOC or FOK",
        )
    return time_in_force


def _limit_amounts(request: gateway_pb2.PlaceOrderRequest, market: Market) -> tuple[int, int, int]:
    price = market.parse_price(request.price)
    quantity = market.parse_quantity(request.quantity)
    if request.quote_quantity:
        raise _invalid(
            RejectReason.INVALID_QUOTE_QUANTITY,
            "quote_quantity",
            "quote_quantity is only for a MARKET BUY; leave it empty on a LIMIT order, was "
            f"{_shown(request.quote_quantity)}",
        )
    check_notional(market, price, quantity)
    return price, quantity, 0


def check_notional(market: Market, price: int, quantity: int) -> int:
    """Price times quantity in quote atoms, within int64 and at least the minimum notional.

    Raises:
        OrdermeshError: AMOUNT_OVERFLOW or BELOW_MIN_NOTIONAL, naming quantity (the field
            a client changes to fix either).
    """
    try:
        return market.check_notional(price, quantity)
    except AmountError as e:
        raise _invalid(e.reason, "quantity", e.message) from None


def _market_amounts(
    request: gateway_pb2.PlaceOrderRequest, market: Market, side: Side
) -> tuple[int, int, int]:
    if request.price:
        raise _invalid(
            RejectReason.INVALID_PRICE,
            "price",
            f"price must be empty on a MARKET order, which takes any price, was "
            f"{_shown(request.price)}",
        )
    has_quantity, has_budget = bool(request.quantity), bool(request.quote_quantity)
    if side is Side.SELL and has_budget:
        raise _invalid(
            RejectReason.INVALID_QUOTE_QUANTITY,
            "quote_quantity",
            "quote_quantity is only for a MARKET BUY; a MARKET SELL gives its quantity",
        )
    if has_quantity and has_budget:
        raise _invalid(
            RejectReason.INVALID_QUOTE_QUANTITY,
            "quote_quantity",
            "a MARKET BUY gives quantity or quote_quantity, not both",
        )
    if has_budget:
        return 0, 0, market.parse_quote_quantity(request.quote_quantity)
    if not has_quantity and side is Side.BUY:
        raise _invalid(
            RejectReason.INVALID_QUANTITY,
            "quantity",
            "a MARKET BUY needs quantity (base to buy) or quote_quantity (quote to spend)",
        )
    return 0, market.parse_quantity(request.quantity), 0


# -- cancels and lookups ---------------------------------------------------------------------


def cancel_order(request: gateway_pb2.CancelOrderRequest, markets: MarketTable) -> ValidCancel:
    """Check a CancelOrderRequest: a known symbol and an order_id or client_order_id.

    Raises:
        OrdermeshError: the first field found wrong.
    """
    market = markets.market(request.symbol)
    order_id, client_order_id = order_reference(request.order_id, request.client_order_id)
    return ValidCancel(market, order_id, client_order_id, response_type(request.response_type))


def order_reference(order_id: int, client_order_id: str) -> tuple[OrderId, ClientOrderId]:
    """An order named by order_id (when non-zero) or else by client_order_id.

    Raises:
        OrdermeshError: INVALID_ORDER_ID when neither is given; INVALID_CLIENT_ORDER_ID for
            a malformed client_order_id.
    """
    if order_id == 0 and not client_order_id:
        raise _invalid(
            RejectReason.INVALID_ORDER_ID,
            "order_id",
            "give the order's order_id or its client_order_id",
        )
    checked = check_client_order_id(client_order_id) if client_order_id else ClientOrderId("")
    return OrderId(order_id), checked
