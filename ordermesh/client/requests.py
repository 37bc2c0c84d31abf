"""The requests the SDK sends, built from its arguments (shared by unary calls and OrderEntry)."""

from __future__ import annotations

from typing import TypeVar

from ordermesh.client import convert
from ordermesh.client.convert import Amount
from ordermesh.client.types import OrderType, SelfTradePrevention, Side, TimeInForce, Wait
from ordermesh.v1 import gateway_pb2 as pb

PageRequest = TypeVar("PageRequest", pb.ListOrdersRequest, pb.ListMyTradesRequest)
FundingRequest = TypeVar("FundingRequest", pb.DepositRequest, pb.WithdrawRequest)


def place_request(
    symbol: str,
    side: Side,
    quantity: Amount | None = None,
    price: Amount | None = None,
    *,
    order_type: OrderType | None = None,
    time_in_force: TimeInForce | None = None,
    quote_quantity: Amount | None = None,
    post_only: bool = False,
    self_trade_prevention: SelfTradePrevention | None = None,
    client_order_id: str | None = None,
    wait: Wait = "ack",
) -> pb.PlaceOrderRequest:
    """A PlaceOrderRequest; a client_order_id is generated when none is given.

    The order type is LIMIT when a price is given, else MARKET.

    Raises:
        TypeError: an amount given as a float.
        ValueError: an unknown side, type, time in force, mode or wait.
    """
    kind = order_type if order_type is not None else ("LIMIT" if price is not None else "MARKET")
    return pb.PlaceOrderRequest(
        symbol=symbol,
        side=convert.side_number(side),
        order_type=convert.order_type_number(kind),
        time_in_force=convert.time_in_force_number(time_in_force),
        price=convert.optional_amount(price, "price"),
        quantity=convert.optional_amount(quantity, "quantity"),
        quote_quantity=convert.optional_amount(quote_quantity, "quote_quantity"),
        client_order_id=(
            client_order_id if client_order_id is not None else convert.new_client_order_id()
        ),
        post_only=post_only,
        self_trade_prevention=convert.self_trade_prevention_number(self_trade_prevention),
        response_type=convert.response_type_number(wait),
    )


def cancel_request(
    symbol: str,
    order_id: int | None = None,
    *,
    client_order_id: str | None = None,
    wait: Wait = "ack",
) -> pb.CancelOrderRequest:
    """A CancelOrderRequest by order_id, else by client_order_id.

    Raises:
        ValueError: neither was given.
    """
    if not order_id and not client_order_id:
        raise ValueError("cancel_order needs an order_id or a client_order_id")
    return pb.CancelOrderRequest(
        symbol=symbol,
        order_id=order_id or 0,
        client_order_id=client_order_id or "",
        response_type=convert.response_type_number(wait),
    )


def order_reference(order_id: int | None, client_order_id: str | None) -> pb.GetOrderRequest:
    """A GetOrderRequest by order_id, else by client_order_id.

    Raises:
        ValueError: neither was given.
    """
    if not order_id and not client_order_id:
        raise ValueError("get_order needs an order_id or a client_order_id")
    return pb.GetOrderRequest(order_id=order_id or 0, client_order_id=client_order_id or "")


def page_request(
    message: type[PageRequest], symbol: str | None, page_size: int, page_token: str
) -> PageRequest:
    """A request for one page of your orders or fills; all markets when symbol is None."""
    return message(symbol=symbol or "", page_size=page_size, page_token=page_token)


def funding_request(
    message: type[FundingRequest],
    account_id: int,
    asset: str,
    amount: Amount,
    reference_id: str | None,
) -> FundingRequest:
    """A DepositRequest or WithdrawRequest; a reference_id is generated when none is given.

    Raises:
        TypeError: an amount given as a float.
    """
    return message(
        account_id=account_id,
        asset=asset,
        amount=convert.amount_text(amount, "amount"),
        reference_id=reference_id if reference_id is not None else convert.new_reference_id(),
    )
