"""Every bad field over gRPC: INVALID_ARGUMENT naming it, and nothing changes anywhere."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2
from tests.integration.gateway.harness import (
    AS_ADMIN,
    Mesh,
    Refusal,
    as_trader,
    balances,
    deposit,
    refused,
)
from tests.unit.gateway.cases import CASES

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_every_bad_place_order_field_is_named_and_changes_nothing(
    running_mesh: Mesh,
) -> None:
    mesh = running_mesh
    (account,) = mesh.accounts(1)
    await deposit(mesh, account, "USDT", "1000")
    await deposit(mesh, account, "BTC", "1")
    await deposit(mesh, account, "ETH", "1")
    before = await balances(mesh, account)
    logged = await mesh.orders_end()

    wrong = []
    for case in CASES:
        for response_type in (S.RESPONSE_TYPE_ACK, S.RESPONSE_TYPE_RESULT):
            request = case.request()
            if case.field != "response_type":
                request.response_type = response_type
            refusal = await refused(mesh.stub.PlaceOrder(request, metadata=as_trader(account)))
            expected = Refusal(INVALID, case.reason.name, case.field, refusal.message)
            if refusal != expected:
                wrong.append((case.name, refusal))
    assert wrong == []

    assert await balances(mesh, account) == before
    assert await mesh.orders_end() == logged  # no command reached the log


async def test_bad_fields_of_the_other_calls(running_mesh: Mesh) -> None:
    mesh = running_mesh
    (account,) = mesh.accounts(1)
    trader = as_trader(account)
    stub = mesh.stub
    calls: list[tuple[Awaitable[Any], str]] = [
        (stub.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=1), metadata=trader), "symbol"),
        (
            stub.CancelOrder(gateway_pb2.CancelOrderRequest(symbol="BTC-USDT"), metadata=trader),
            "order_id",
        ),
        (stub.GetOrder(gateway_pb2.GetOrderRequest(), metadata=trader), "order_id"),
        (
            stub.GetOrder(gateway_pb2.GetOrderRequest(client_order_id="a b"), metadata=trader),
            "client_order_id",
        ),
        (
            stub.ListOrders(gateway_pb2.ListOrdersRequest(page_size=1001), metadata=trader),
            "page_size",
        ),
        (
            stub.ListOrders(
                gateway_pb2.ListOrdersRequest(page_token="garbage"),  # noqa: S106 - not a secret
                metadata=trader,
            ),
            "page_token",
        ),
        (
            stub.ListMyTrades(gateway_pb2.ListMyTradesRequest(symbol="X-Y"), metadata=trader),
            "symbol",
        ),
        (
            stub.GetOrderBook(
                gateway_pb2.GetOrderBookRequest(symbol="BTC-USDT", depth=1001), metadata=trader
            ),
            "depth",
        ),
        (stub.GetOrderBook(gateway_pb2.GetOrderBookRequest(), metadata=trader), "symbol"),
        (stub.GetTicker(gateway_pb2.GetTickerRequest(symbol="btc"), metadata=trader), "symbol"),
        (
            stub.ListTrades(
                gateway_pb2.ListTradesRequest(symbol="BTC-USDT", limit=5000), metadata=trader
            ),
            "limit",
        ),
        (
            stub.GetCandles(gateway_pb2.GetCandlesRequest(symbol="BTC-USDT"), metadata=trader),
            "interval",
        ),
        (
            stub.GetCandles(
                gateway_pb2.GetCandlesRequest(
                    symbol="BTC-USDT",
                    interval=S.CANDLE_INTERVAL_1H,
                    start_time=Timestamp(seconds=100),
                    end_time=Timestamp(seconds=50),
                ),
                metadata=trader,
            ),
            "end_time",
        ),
    ]
    for call, field in calls:
        refusal = await refused(call)
        assert (refusal.code, refusal.field) == (INVALID, field), refusal
    funding = gateway_pb2.DepositRequest(
        account_id=account, asset="USDT", amount="1", reference_id="ref-1"
    )
    bad_funding: list[tuple[dict[str, Any], str]] = [
        ({"amount": "1.0000001"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"asset": "XYZ"}, "asset"),
        ({"account_id": 0}, "account_id"),
        ({"reference_id": "has space"}, "reference_id"),
    ]
    for changes, field in bad_funding:
        request = gateway_pb2.DepositRequest()
        request.CopyFrom(funding)
        for name, value in changes.items():
            setattr(request, name, value)
        refusal = await refused(stub.Deposit(request, metadata=AS_ADMIN))
        assert (refusal.code, refusal.field) == (INVALID, field), refusal
    assert await balances(mesh, account) == {}
