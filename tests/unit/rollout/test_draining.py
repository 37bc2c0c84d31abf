"""What a rollout's drain relies on, on real grpc.aio servers bound to loopback.

- a bounded connection age makes a client reconnect (GOAWAY), while its call in flight on
  the old connection still finishes;
- SIGTERM turns health NOT_SERVING at once, refuses new calls and finishes calls in flight;
- the gateway's settings reach its server as those channel arguments.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.bootstrap import GatewaySettings, build
from gateway.service import SERVICE_NAME
from ordermesh.bus.memory import MemoryBus
from ordermesh.config import SettingsError
from ordermesh.grpcx.server import GrpcServer, connection_options
from ordermesh.markets import load_markets
from ordermesh.v1 import matcher_pb2, matcher_pb2_grpc
from tests.waiting import eventually

SERVICE = "ordermesh.v1.Matcher"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Recorder(matcher_pb2_grpc.MatcherServicer):
    """GetOrderBook holds until `release`; every call records the client's address."""

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetOrderBook(self, request, context):
        self.peers.append(context.peer())
        self.entered.set()
        await self.release.wait()
        return matcher_pb2.MatcherGetOrderBookResponse(symbol=request.symbol, sequence=3)

    async def GetOrder(self, request, context):
        self.peers.append(context.peer())
        return matcher_pb2.MatcherGetOrderResponse()


async def serve(options: list[tuple[str, int]]) -> tuple[GrpcServer, Recorder]:
    recorder = Recorder()
    server = GrpcServer(
        service_names=[SERVICE],
        registrars=[lambda s: matcher_pb2_grpc.add_MatcherServicer_to_server(recorder, s)],
        grace_seconds=5.0,
        options=options,
    )
    await server.start()
    return server, recorder


@pytest_asyncio.fixture
async def aged() -> AsyncIterator[tuple[GrpcServer, Recorder]]:
    server, recorder = await serve(
        connection_options(max_age_seconds=0.5, max_age_grace_seconds=10.0)
    )
    try:
        yield server, recorder
    finally:
        recorder.release.set()
        await server.stop()


@pytest.mark.asyncio
async def test_an_aged_connection_is_moved_and_its_call_in_flight_finishes(aged):
    server, recorder = aged
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
        stub = matcher_pb2_grpc.MatcherStub(channel)
        long_call = asyncio.ensure_future(
            stub.GetOrderBook(matcher_pb2.MatcherGetOrderBookRequest(symbol="BTC-USDT"), timeout=20)
        )
        await asyncio.wait_for(recorder.entered.wait(), 5)
        first = recorder.peers[0]

        async def next_peer() -> str:
            await stub.GetOrder(matcher_pb2.MatcherGetOrderRequest(order_id=1), timeout=5)
            peer: str = recorder.peers[-1]
            return peer

        # The same channel ends up on a new connection (another client port) once the old
        # one has aged out: the server said GOAWAY, and no call failed on the way.
        await eventually(next_peer, lambda peer: peer != first, what="a new connection", seconds=10)
        assert not long_call.done()
        recorder.release.set()
        answer = await asyncio.wait_for(long_call, 5)
        assert (answer.symbol, answer.sequence) == ("BTC-USDT", 3)


@pytest.mark.asyncio
async def test_sigterm_says_not_serving_first_then_finishes_the_call_in_flight():
    server, recorder = await serve([])
    try:
        await server.set_serving(True)
        server.install_signal_handlers()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=20)
        assert (await watch.read()).status == SERVING
        stub = matcher_pb2_grpc.MatcherStub(channel)
        long_call = asyncio.ensure_future(
            stub.GetOrderBook(matcher_pb2.MatcherGetOrderBookRequest(symbol="ETH-USDT"), timeout=20)
        )
        await asyncio.wait_for(recorder.entered.wait(), 5)

        os.kill(os.getpid(), signal.SIGTERM)
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        assert not long_call.done(), "the drain must not cut the call in flight"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetOrder(matcher_pb2.MatcherGetOrderRequest(order_id=2), timeout=2)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

        recorder.release.set()
        assert (await asyncio.wait_for(long_call, 5)).symbol == "ETH-USDT"
        watch.cancel()
        await asyncio.wait_for(server.wait_for_termination(), 10)
        await channel.close()
    finally:
        recorder.release.set()
        await server.stop()


def test_connection_options_are_grpc_channel_arguments():
    assert connection_options() == []
    assert dict(
        connection_options(
            max_age_seconds=300, max_age_grace_seconds=30, keepalive_seconds=60,
            keepalive_timeout_seconds=20,
        )
    ) == {
        "grpc.max_connection_age_ms": 300_000,
        "grpc.max_connection_age_grace_ms": 30_000,
        "grpc.keepalive_time_ms": 60_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="max_age_seconds must be 0 or more, was -1"):
        connection_options(max_age_seconds=-1)


def test_the_gateway_settings_reach_its_server(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[keys]]\nname = "t"\nkey = "key-of-trader-one"\naccount_id = 1\nrole = "trader"\n'
    )
    settings = GatewaySettings(
        kafka="127.0.0.1:1", api_keys=str(keys), max_connection_age_seconds=42,
        max_connection_age_grace_seconds=7, keepalive_seconds=0,
    )  # fmt: skip
    service = build(settings, MemoryBus(), markets=load_markets(settings.markets))
    assert service.server.service_names == [SERVICE_NAME]
    assert dict(service.server.options) == {
        "grpc.max_connection_age_ms": 42_000,
        "grpc.max_connection_age_grace_ms": 7_000,
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_connection_age_seconds", -1.0, "max_connection_age_seconds must be 0 or more"),
        ("max_connection_age_grace_seconds", -0.5, "max_connection_age_grace_seconds must be 0"),
        ("keepalive_seconds", -2.0, "keepalive_seconds must be 0 or more"),
        ("keepalive_timeout_seconds", 0.0, "keepalive_timeout_seconds must be above 0"),
    ],
)
def test_bad_drain_settings_are_refused(field, value, message):
    with pytest.raises(SettingsError, match=message):
        GatewaySettings(**{field: value})
