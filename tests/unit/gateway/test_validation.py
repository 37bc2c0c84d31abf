"""Every PlaceOrder field, and the other requests, checked before anything goes upstream."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway import arguments, validation
from gateway.validation import ResponseType
from ordermesh.grpcx.errors import status_code
from ordermesh.markets import load_markets
from ordermesh.model import (
    OrdermeshError,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from ordermesh.v1 import common_pb2, gateway_pb2
from tests.unit.gateway.cases import CASES, VALID_LIMIT, VALID_MARKET_BUY, Case

MARKETS = load_markets()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_bad_field_is_refused_with_its_reason_and_name(case: Case) -> None:
    with pytest.raises(OrdermeshError) as raised:
        validation.place_order(case.request(), MARKETS)
    assert (raised.value.reason, raised.value.field) == (case.reason, case.field)
    assert status_code(raised.value.reason).name == "INVALID_ARGUMENT"
    assert case.field in raised.value.message


def test_the_valid_bases_pass_with_the_defaults_applied() -> None:
    limit = validation.place_order(gateway_pb2.PlaceOrderRequest(**VALID_LIMIT), MARKETS)
    assert (limit.side, limit.order_type, limit.time_in_force) == (
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
    )
    assert (limit.price, limit.quantity, limit.quote_quantity) == (100_000_000, 1_000_000, 0)
    assert limit.self_trade_prevention is SelfTradePrevention.EXPIRE_TAKER
    assert limit.response_type is ResponseType.ACK
    market = validation.place_order(gateway_pb2.PlaceOrderRequest(**VALID_MARKET_BUY), MARKETS)
    assert market.time_in_force is TimeInForce.IOC
    assert (market.price, market.quantity, market.quote_quantity) == (0, 0, 10_000_000)


def test_explicit_options_are_kept() -> None:
    request = gateway_pb2.PlaceOrderRequest(
        **VALID_LIMIT,
        time_in_force=common_pb2.TIME_IN_FORCE_FOK,
        self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_NONE,
        response_type=common_pb2.RESPONSE_TYPE_RESULT,
    )
    order = validation.place_order(request, MARKETS)
    assert order.time_in_force is TimeInForce.FOK
    assert order.self_trade_prevention is SelfTradePrevention.NONE
    assert order.response_type is ResponseType.RESULT


@pytest.mark.parametrize(
    ("changes", "price", "quantity"),
    [
        ({"price": "100.10", "quantity": "0.0100"}, 100_100_000, 1_000_000),
        ({"price": "0100", "quantity": "1"}, 100_000_000, 100_000_000),
    ],
)
def test_trailing_and_leading_zeros_are_fine(changes, price, quantity) -> None:
    order = validation.place_order(
        gateway_pb2.PlaceOrderRequest(**{**VALID_LIMIT, **changes}), MARKETS
    )
    assert (order.price, order.quantity) == (price, quantity)


def test_post_only_limit_gtc_and_market_sell_by_quantity_are_fine() -> None:
    post = validation.place_order(
        gateway_pb2.PlaceOrderRequest(**VALID_LIMIT, post_only=True), MARKETS
    )
    assert post.post_only
    sell = gateway_pb2.PlaceOrderRequest(
        **{**VALID_MARKET_BUY, "side": common_pb2.SIDE_SELL, "quote_quantity": ""},
        quantity="0.5",
    )
    assert validation.place_order(sell, MARKETS).quantity == 50_000_000


def _refusal(call) -> tuple[RejectReason, str]:
    with pytest.raises(OrdermeshError) as raised:
        call()
    return raised.value.reason, raised.value.field


def test_cancel_needs_a_symbol_and_an_order() -> None:
    cancel = gateway_pb2.CancelOrderRequest
    assert _refusal(lambda: validation.cancel_order(cancel(order_id=1), MARKETS)) == (
        RejectReason.UNKNOWN_SYMBOL,
        "symbol",
    )
    assert _refusal(lambda: validation.cancel_order(cancel(symbol="BTC-USDT"), MARKETS)) == (
        RejectReason.INVALID_ORDER_ID,
        "order_id",
    )
    bad = cancel(symbol="BTC-USDT", client_order_id="no way")
    assert _refusal(lambda: validation.cancel_order(bad, MARKETS)) == (
        RejectReason.INVALID_CLIENT_ORDER_ID,
        "client_order_id",
    )
    bad = cancel(symbol="BTC-USDT", order_id=3, response_type=4)  # type: ignore[arg-type]
    assert _refusal(lambda: validation.cancel_order(bad, MARKETS)) == (
        RejectReason.INVALID_RESPONSE_TYPE,
        "response_type",
    )
    good = validation.cancel_order(cancel(symbol="BTC-USDT", client_order_id="c-1"), MARKETS)
    assert (good.order_id, good.client_order_id, good.response_type) == (0, "c-1", ResponseType.ACK)


FUNDING: dict[str, Any] = {
    "account_id": 7,
    "asset": "USDT",
    "amount": "1000.5",
    "reference_id": "dep:1.a_b-c",
}


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"account_id": 0}, RejectReason.INVALID_ACCOUNT, "account_id"),
        ({"account_id": 2**63}, RejectReason.INVALID_ACCOUNT, "account_id"),
        ({"asset": ""}, RejectReason.UNKNOWN_ASSET, "asset"),
        ({"asset": "DOGE"}, RejectReason.UNKNOWN_ASSET, "asset"),
        ({"amount": ""}, RejectReason.INVALID_AMOUNT, "amount"),
        ({"amount": "x"}, RejectReason.INVALID_AMOUNT, "amount"),
        ({"amount": "-1"}, RejectReason.INVALID_AMOUNT, "amount"),
        ({"amount": "0"}, RejectReason.INVALID_AMOUNT, "amount"),
        ({"amount": "1.0000001"}, RejectReason.INVALID_AMOUNT, "amount"),
        ({"amount": "99999999999999"}, RejectReason.AMOUNT_OVERFLOW, "amount"),
        ({"reference_id": ""}, RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ({"reference_id": "a" * 65}, RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ({"reference_id": "has space"}, RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ({"reference_id": "a/b"}, RejectReason.INVALID_REFERENCE_ID, "reference_id"),
    ],
)
def test_funding_fields(changes, reason, field) -> None:
    for message in (gateway_pb2.DepositRequest, gateway_pb2.WithdrawRequest):
        request = message(**{**FUNDING, **changes})
        assert _refusal(lambda r=request: arguments.funding(r, MARKETS)) == (reason, field)


def test_funding_in_atoms_of_the_asset() -> None:
    valid = arguments.funding(gateway_pb2.DepositRequest(**FUNDING), MARKETS)
    assert (valid.account_id, valid.asset.code, valid.amount) == (7, "USDT", 1_000_500_000)
    btc = arguments.funding(gateway_pb2.DepositRequest(**{**FUNDING, "asset": "BTC"}), MARKETS)
    assert btc.amount == 100_050_000_000


def test_bounded_limits() -> None:
    assert arguments.bounded(0, "depth", 20) == 20
    assert arguments.bounded(1000, "depth", 20) == 1000
    assert _refusal(lambda: arguments.bounded(1001, "depth", 20)) == (
        RejectReason.INVALID_ARGUMENT,
        "depth",
    )


def test_candles() -> None:
    request = gateway_pb2.GetCandlesRequest(
        symbol="BTC-USDT",
        interval=common_pb2.CANDLE_INTERVAL_1M,
        start_time=Timestamp(seconds=10, nanos=5),
    )
    valid = arguments.candles(request, MARKETS)
    assert (valid.start_ns, valid.end_ns, valid.limit) == (10_000_000_005, 0, 500)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"interval": 0}, "interval"),
        ({"interval": 99}, "interval"),
        ({"limit": 1001}, "limit"),
        ({"start_time": Timestamp(seconds=-1)}, "start_time"),
        ({"end_time": Timestamp(seconds=5)}, "end_time"),
    ]
    for changes, field in cases:
        bad = gateway_pb2.GetCandlesRequest()
        bad.CopyFrom(request)
        for name, value in changes.items():
            if isinstance(value, Timestamp):
                getattr(bad, name).CopyFrom(value)
            else:
                setattr(bad, name, value)
        assert _refusal(lambda b=bad: arguments.candles(b, MARKETS)) == (
            RejectReason.INVALID_ARGUMENT,
            field,
        )


def test_the_table_covers_every_place_order_field() -> None:
    named = {case.field for case in CASES}
    assert named == {f.name for f in gateway_pb2.PlaceOrderRequest.DESCRIPTOR.fields}
