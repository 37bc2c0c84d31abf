"""Who may call what: keys, roles, accounts, rate limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2
from tests.integration.gateway.harness import (
    AS_ADMIN,
    Mesh,
    as_trader,
    balances,
    deposit,
    limit,
    mesh,
    place,
    refused,
    settled_order,
    trader_key,
)
from tests.integration.gateway.settled import check_settled

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_another_account_can_neither_see_nor_cancel_my_order(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    owner, other = mesh.accounts(2)
    await deposit(mesh, owner, "USDT", "100")
    mine = await place(mesh, owner, limit(S.SIDE_BUY, "10", "1", "mine"))
    await settled_order(mesh, owner, mine.order_id, S.ORDER_STATUS_NEW)

    seen = await refused(
        mesh.stub.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=mine.order_id), metadata=as_trader(other)
        )
    )
    assert (seen.code, seen.reason) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER")
    by_client = await refused(
        mesh.stub.GetOrder(
            gateway_pb2.GetOrderRequest(client_order_id="mine"), metadata=as_trader(other)
        )
    )
    assert by_client.code == grpc.StatusCode.NOT_FOUND
    canceled = await refused(
        mesh.stub.CancelOrder(
            gateway_pb2.CancelOrderRequest(symbol="BTC-USDT", order_id=mine.order_id),
            metadata=as_trader(other),
        )
    )
    assert (canceled.code, canceled.reason) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER")
    listed = await mesh.stub.ListOpenOrders(
        gateway_pb2.ListOpenOrdersRequest(), metadata=as_trader(other)
    )
    assert not listed.orders
    assert await balances(mesh, owner) == {"USDT": ("90", "10")}
    await check_settled(mesh)


async def test_keys_and_roles(running_mesh: Mesh) -> None:
    mesh = running_mesh
    (account,) = mesh.accounts(1)
    request = gateway_pb2.DepositRequest(
        account_id=account, asset="USDT", amount="1", reference_id="r-1"
    )
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (
            (("x-api-key", "no-such-key-0123456789"),),
            grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHENTICATED",
        ),
        ((("authorization", "Bearer a.b.c"),), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (as_trader(account), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    ]
    withdrawal = gateway_pb2.WithdrawRequest(
        account_id=account, asset="USDT", amount="1", reference_id="r-2"
    )
    for metadata, code, reason in cases:
        for call in (
            mesh.stub.Deposit(request, metadata=metadata),
            mesh.stub.Withdraw(withdrawal, metadata=metadata),
        ):
            refusal = await refused(call)
            assert (refusal.code, refusal.reason) == (code, reason), metadata
    assert await balances(mesh, account) == {}
    bare = await refused(mesh.stub.ListSymbols(gateway_pb2.ListSymbolsRequest()))
    assert bare.code == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in bare.message
    # authorization: ApiKey works as well as x-api-key
    header = (("authorization", f"ApiKey {trader_key(account)}"),)
    assert (await mesh.stub.ListSymbols(gateway_pb2.ListSymbolsRequest(), metadata=header)).symbols
    # An admin key without an account funds, but does not trade.
    funded = await mesh.stub.Deposit(request, metadata=AS_ADMIN)
    assert funded.balance.available == "1"
    assert (await mesh.stub.Deposit(request, metadata=AS_ADMIN)).duplicate
    admin_order = await refused(
        mesh.stub.PlaceOrder(limit(S.SIDE_BUY, "1", "1", "adm"), metadata=AS_ADMIN)
    )
    assert admin_order.code == grpc.StatusCode.PERMISSION_DENIED
    withdrawn = await mesh.stub.Withdraw(
        gateway_pb2.WithdrawRequest(
            account_id=account, asset="USDT", amount="0.4", reference_id="w-1"
        ),
        metadata=AS_ADMIN,
    )
    assert withdrawn.balance.available == "0.6"
    assert (await check_settled(mesh)).supply == {"USDT": 600_000}  # 1 in, 0.4 out


async def test_the_rate_limit_is_per_account(pg_database: str, key_file: Path) -> None:
    async with mesh(pg_database, key_file, rate_per_second=0.5, burst=3) as limited:
        first, second = limited.accounts(2)
        call = limited.stub.ListSymbols
        for _ in range(3):
            await call(gateway_pb2.ListSymbolsRequest(), metadata=as_trader(first))
        refusal = await refused(call(gateway_pb2.ListSymbolsRequest(), metadata=as_trader(first)))
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
        assert "retry in" in refusal.message
        await call(gateway_pb2.ListSymbolsRequest(), metadata=as_trader(second))


async def test_streams_need_a_key_and_an_account_for_account_streams(running_mesh: Mesh) -> None:
    mesh = running_mesh

    async def refused_stream(call: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        return raised.value.code()

    no_key = mesh.stub.StreamOrderUpdates(gateway_pb2.StreamOrderUpdatesRequest())
    assert await refused_stream(no_key) == grpc.StatusCode.UNAUTHENTICATED
    # An admin key without an account has no orders to follow or to enter.
    admin_updates = mesh.stub.StreamOrderUpdates(
        gateway_pb2.StreamOrderUpdatesRequest(), metadata=AS_ADMIN
    )
    assert await refused_stream(admin_updates) == grpc.StatusCode.PERMISSION_DENIED
    admin_entry = mesh.stub.OrderEntry(iter(()), metadata=AS_ADMIN)
    assert await refused_stream(admin_entry) == grpc.StatusCode.PERMISSION_DENIED
    # Market data is public: any key may follow it.
    market = mesh.stub.StreamMarketData(
        gateway_pb2.StreamMarketDataRequest(symbol="BTC-USDT"), metadata=AS_ADMIN
    )
    first = await market.read()
    assert isinstance(first, gateway_pb2.StreamMarketDataResponse)
    assert first.WhichOneof("data") == "snapshot"
    market.cancel()
