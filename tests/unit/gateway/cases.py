"""Bad PlaceOrder requests and what each must be refused with; shared with the gRPC tests.

Each case changes a valid request (`VALID_LIMIT` or `VALID_MARKET_BUY`) in one field and
names the RejectReason and the field the refusal must carry. Amounts are for the markets of
config/markets.toml: BTC-USDT has tick 0.01 (USDT, 6 decimals), lot and min_qty 0.0001 (BTC,
8 decimals), min_notional 1; ETH-USDT has min_qty 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ordermesh.model import RejectReason as R
from ordermesh.v1 import common_pb2, gateway_pb2

VALID_LIMIT: dict[str, Any] = {
    "symbol": "BTC-USDT",
    "side": common_pb2.SIDE_BUY,
    "order_type": common_pb2.ORDER_TYPE_LIMIT,
    "price": "100",
    "quantity": "0.01",
    "client_order_id": "bad-input",
}
VALID_MARKET_BUY: dict[str, Any] = {
    "symbol": "BTC-USDT",
    "side": common_pb2.SIDE_BUY,
    "order_type": common_pb2.ORDER_TYPE_MARKET,
    "quote_quantity": "10",
    "client_order_id": "bad-input",
}
TOO_BIG = "99999999999999999999"  # more atoms than an int64 holds at any scale here


@dataclass(frozen=True)
class Case:
    name: str
    base: dict[str, Any]
    changes: dict[str, Any]
    reason: R
    field: str

    def request(self) -> gateway_pb2.PlaceOrderRequest:
        return gateway_pb2.PlaceOrderRequest(**{**self.base, **self.changes})


def _limit(name: str, changes: dict[str, Any], reason: R, field: str) -> Case:
    return Case(name, VALID_LIMIT, changes, reason, field)


def _market(name: str, changes: dict[str, Any], reason: R, field: str) -> Case:
    return Case(name, VALID_MARKET_BUY, changes, reason, field)


def _amount_cases(field: str, reason: R, make: Any) -> list[Case]:
    return [
        make(f"{field}-missing", {field: ""}, reason, field),
        make(f"{field}-letters", {field: "abc"}, reason, field),
        make(f"{field}-exponent", {field: "1e2"}, reason, field),
        make(f"{field}-comma", {field: "1,5"}, reason, field),
        make(f"{field}-spaces", {field: " 10"}, reason, field),
        make(f"{field}-plus", {field: "+10"}, reason, field),
        make(f"{field}-trailing-point", {field: "10."}, reason, field),
        make(f"{field}-nan", {field: "NaN"}, reason, field),
        make(f"{field}-negative", {field: "-10"}, reason, field),
        make(f"{field}-zero", {field: "0"}, reason, field),
        make(f"{field}-zero-decimals", {field: "0.000"}, reason, field),
        make(f"{field}-overflow", {field: TOO_BIG}, R.AMOUNT_OVERFLOW, field),
        make(f"{field}-too-long", {field: "1" * 70}, R.AMOUNT_OVERFLOW, field),
    ]


CASES: list[Case] = [
    _limit("symbol-missing", {"symbol": ""}, R.UNKNOWN_SYMBOL, "symbol"),
    _limit("symbol-unknown", {"symbol": "DOGE-USDT"}, R.UNKNOWN_SYMBOL, "symbol"),
    _limit("symbol-lower-case", {"symbol": "btc-usdt"}, R.UNKNOWN_SYMBOL, "symbol"),
    _limit("side-missing", {"side": 0}, R.INVALID_SIDE, "side"),
    _limit("side-unknown", {"side": 9}, R.INVALID_SIDE, "side"),
    _limit("type-missing", {"order_type": 0}, R.INVALID_ORDER_TYPE, "order_type"),
    _limit("type-unknown", {"order_type": 7}, R.INVALID_ORDER_TYPE, "order_type"),
    _limit("tif-unknown", {"time_in_force": 9}, R.INVALID_TIME_IN_FORCE, "time_in_force"),
    _market(
        "tif-gtc-market",
        {"time_in_force": common_pb2.TIME_IN_FORCE_GTC},
        R.INVALID_TIME_IN_FORCE,
        "time_in_force",
    ),
    _limit(
        "stp-unknown",
        {"self_trade_prevention": 9},
        R.INVALID_SELF_TRADE_PREVENTION,
        "self_trade_prevention",
    ),
    _limit("response-unknown", {"response_type": 5}, R.INVALID_RESPONSE_TYPE, "response_type"),
    _limit("coid-missing", {"client_order_id": ""}, R.INVALID_CLIENT_ORDER_ID, "client_order_id"),
    _limit(
        "coid-too-long", {"client_order_id": "a" * 37}, R.INVALID_CLIENT_ORDER_ID, "client_order_id"
    ),
    _limit(
        "coid-space", {"client_order_id": "my order"}, R.INVALID_CLIENT_ORDER_ID, "client_order_id"
    ),
    _limit("coid-dot", {"client_order_id": "a.b"}, R.INVALID_CLIENT_ORDER_ID, "client_order_id"),
    _limit(
        "coid-non-ascii", {"client_order_id": "ordré"}, R.INVALID_CLIENT_ORDER_ID, "client_order_id"
    ),
    _market("post-only-market", {"post_only": True}, R.INVALID_POST_ONLY, "post_only"),
    _limit(
        "post-only-ioc",
        {"post_only": True, "time_in_force": common_pb2.TIME_IN_FORCE_IOC},
        R.INVALID_POST_ONLY,
        "post_only",
    ),
    *_amount_cases("price", R.INVALID_PRICE, _limit),
    _limit("price-over-precise", {"price": "100.001"}, R.INVALID_PRICE, "price"),
    *_amount_cases("quantity", R.INVALID_QUANTITY, _limit),
    _limit("quantity-over-precise", {"quantity": "0.00001"}, R.INVALID_QUANTITY, "quantity"),
    _limit(
        "quantity-below-min",
        {"symbol": "ETH-USDT", "quantity": "0.0005", "price": "3000"},
        R.BELOW_MIN_QUANTITY,
        "quantity",
    ),
    _limit(
        "notional-below-min",
        {"price": "1", "quantity": "0.0001"},
        R.BELOW_MIN_NOTIONAL,
        "quantity",
    ),
    _limit(
        "notional-overflow",
        {"price": "9000000000000", "quantity": "2"},
        R.AMOUNT_OVERFLOW,
        "quantity",
    ),
    _limit(
        "limit-with-budget", {"quote_quantity": "10"}, R.INVALID_QUOTE_QUANTITY, "quote_quantity"
    ),
    _market("market-with-price", {"price": "100"}, R.INVALID_PRICE, "price"),
    _market("market-buy-both", {"quantity": "0.01"}, R.INVALID_QUOTE_QUANTITY, "quote_quantity"),
    _market("market-buy-neither", {"quote_quantity": ""}, R.INVALID_QUANTITY, "quantity"),
    _market(
        "market-sell-budget",
        {"side": common_pb2.SIDE_SELL},
        R.INVALID_QUOTE_QUANTITY,
        "quote_quantity",
    ),
    _market(
        "market-sell-no-quantity",
        {"side": common_pb2.SIDE_SELL, "quote_quantity": ""},
        R.INVALID_QUANTITY,
        "quantity",
    ),
    *[
        case
        for case in _amount_cases("quote_quantity", R.INVALID_QUOTE_QUANTITY, _market)
        if case.name != "quote_quantity-missing"  # that is market-buy-neither
    ],
    _market(
        "quote_quantity-over-precise",
        {"quote_quantity": "10.0000001"},
        R.INVALID_QUOTE_QUANTITY,
        "quote_quantity",
    ),
    _market(
        "quote_quantity-below-min",
        {"quote_quantity": "0.5"},
        R.BELOW_MIN_NOTIONAL,
        "quote_quantity",
    ),
]
