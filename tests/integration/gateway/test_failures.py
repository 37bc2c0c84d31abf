"""Dependencies that are down or slow: UNAVAILABLE, DEADLINE_EXCEEDED, health, late results."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.bootstrap import build as build_gateway
from ordermesh.grpcx.server import GrpcServer
from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc, ubscore_pb2, ubscore_pb2_grpc
from tests.integration.gateway.harness import (
    AS_ADMIN,
    Mesh,
    as_trader,
    deposit,
    eventually,
    gateway_settings,
    launch,
    limit,
    mesh,
    place,
    refused,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = answer.status
    return status


async def test_ubscore_down_is_unavailable_and_not_serving(running_mesh: Mesh) -> None:
    mesh = running_mesh
    (account,) = mesh.accounts(1)
    assert (
        await health(mesh.channel, "ordermesh.v1.Gateway") == health_pb2.HealthCheckResponse.SERVING
    )
    await deposit(mesh, account, "USDT", "100")
    assert await mesh.ubscore.stop() == 0

    for call in (
        place(mesh, account, limit(S.SIDE_BUY, "10", "1", "while-down")),
        place(mesh, account, limit(S.SIDE_BUY, "10", "1", "while-down-ack", result=False)),
        mesh.stub.GetBalances(gateway_pb2.GetBalancesRequest(), metadata=as_trader(account)),
        mesh.stub.Deposit(
            gateway_pb2.DepositRequest(
                account_id=account, asset="USDT", amount="1", reference_id="down-1"
            ),
            metadata=AS_ADMIN,
        ),
    ):
        refusal = await refused(call)
        assert (refusal.code, refusal.reason) == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
        assert "ubscore" in refusal.message
        assert "safe to retry" in refusal.message
    # What does not need ubscore still works.
    symbols = await mesh.stub.ListSymbols(
        gateway_pb2.ListSymbolsRequest(), metadata=as_trader(account)
    )
    assert symbols.symbols
    await eventually(
        lambda: health(mesh.channel),
        lambda status: status == health_pb2.HealthCheckResponse.NOT_SERVING,
        what="the gateway to report NOT_SERVING",
    )


async def test_a_late_result_is_answered_at_ack_level(pg_database: str, key_file: Path) -> None:
    async with mesh(pg_database, key_file, result_timeout_seconds=0.2) as late:
        (account,) = late.accounts(1)
        await deposit(late, account, "USDT", "100")
        assert await late.matcher.stop() == 0  # nobody answers the order now
        answer = await place(late, account, limit(S.SIDE_BUY, "10", "1", "late"))
        # The order is in the log, its funds frozen; the matcher's answer did not come in time.
        assert (answer.status, answer.filled_quantity) == (S.ORDER_STATUS_PENDING_NEW, "0")
        assert answer.order_id


class StalledUBSCore(ubscore_pb2_grpc.UBSCoreServicer):
    """A ubscore that takes calls and never answers them (until released)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def GetBalances(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreGetBalancesResponse()

    async def Reserve(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreReserveResponse()

    async def ReserveBatch(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreReserveBatchResponse()

    async def Cancel(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreCancelResponse()

    async def Deposit(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreDepositResponse()

    async def Withdraw(self, request, context):
        await self.release.wait()
        return ubscore_pb2.UBSCoreWithdrawResponse()


async def test_an_upstream_that_does_not_answer_is_deadline_exceeded(
    running_mesh: Mesh, key_file: Path
) -> None:
    mesh = running_mesh
    stalled = StalledUBSCore()
    server = GrpcServer(
        service_names=["ordermesh.v1.UBSCore"],
        registrars=[lambda s: ubscore_pb2_grpc.add_UBSCoreServicer_to_server(stalled, s)],
        grace_seconds=0.1,
    )
    ports = {
        "ubscore": await server.start(),
        "matcher": mesh.matcher.service.port,
        "settlement": mesh.settlement.service.port,
    }
    settings = gateway_settings(
        ports, mesh.prefix, api_keys=str(key_file), upstream_timeout_seconds=0.2
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            gateway = await launch(stack, build_gateway(settings, mesh.bus), wait=True)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.service.port}")
            stack.push_async_callback(channel.close)
            stub = gateway_pb2_grpc.GatewayStub(channel)
            (account,) = mesh.accounts(1)
            for call in (
                stub.GetBalances(gateway_pb2.GetBalancesRequest(), metadata=as_trader(account)),
                stub.PlaceOrder(limit(S.SIDE_BUY, "10", "1", "x"), metadata=as_trader(account)),
            ):
                refusal = await refused(call)
                assert (refusal.code, refusal.reason) == (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "UNAVAILABLE",
                )
                assert "did not answer within 0.2 s" in refusal.message
    finally:
        stalled.release.set()
        await server.stop()


async def test_a_record_that_does_not_decode_stops_the_gateway(running_mesh: Mesh) -> None:
    mesh = running_mesh
    producer = mesh.bus.producer()
    await producer.start()
    try:
        await producer.send(mesh.prefix + "ordermesh.engine", b"\x0a\xff garbage", key=b"BTC-USDT")
    finally:
        await producer.stop()
    status = await asyncio.wait_for(asyncio.shield(mesh.gateway.task), 10)
    assert status == 1  # fail-stop: never skip a record
