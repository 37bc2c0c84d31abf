"""The server helper on a real grpc.aio server bound to loopback."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ordermesh.grpcx import errors
from ordermesh.grpcx.server import VERSION_HEADER, GrpcServer
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import matcher_pb2, matcher_pb2_grpc

SERVICE = "ordermesh.v1.Matcher"


class SlowMatcher(matcher_pb2_grpc.MatcherServicer):
    """GetOrderBook waits for `release`; GetOrder always refuses with a reason."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetOrderBook(self, request, context):
        self.entered.set()
        await self.release.wait()
        return matcher_pb2.MatcherGetOrderBookResponse(symbol=request.symbol, sequence=7)

    async def GetOrder(self, request, context):
        await errors.abort(
            context,
            OrdermeshError(
                RejectReason.UNKNOWN_ORDER, f"no order {request.order_id}", field="order_id"
            ),
        )


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[GrpcServer, SlowMatcher, grpc.aio.Channel]]:
    servicer = SlowMatcher()
    server = GrpcServer(
        service_names=[SERVICE],
        registrars=[lambda s: matcher_pb2_grpc.add_MatcherServicer_to_server(servicer, s)],
        grace_seconds=5.0,
        version="9.9.9-test",
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, servicer, channel
    finally:
        servicer.release.set()
        await channel.close()
        await server.stop()


async def health_status(channel, service=""):
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return response.status


@pytest.mark.asyncio
async def test_health_starts_not_serving_and_follows_readiness(served):
    server, _, channel = served
    assert await health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    await server.set_serving(True)
    assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    assert await health_status(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING
    await server.set_serving(False)
    assert await health_status(channel, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.asyncio
async def test_every_response_carries_the_build_version(served):
    _, _, channel = served
    health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    call = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert dict(await call.initial_metadata())[VERSION_HEADER] == "9.9.9-test"
    failing = matcher_pb2_grpc.MatcherStub(channel).GetOrder(matcher_pb2.MatcherGetOrderRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await failing
    assert dict(await failing.initial_metadata())[VERSION_HEADER] == "9.9.9-test"


@pytest.mark.asyncio
async def test_reflection_lists_the_services(served):
    _, _, channel = served
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one_request():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(one_request(), timeout=5):
        names = {s.name for s in response.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health"} <= names


@pytest.mark.asyncio
async def test_refusals_carry_status_and_error_info(served):
    _, _, channel = served
    call = matcher_pb2_grpc.MatcherStub(channel).GetOrder(
        matcher_pb2.MatcherGetOrderRequest(order_id=42), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no order 42"
    assert await errors.reason_of(call) is RejectReason.UNKNOWN_ORDER


async def new_call_is_refused(stub) -> bool:
    try:
        await stub.GetOrderBook(matcher_pb2.MatcherGetOrderBookRequest(symbol="late"), timeout=0.5)
    except grpc.aio.AioRpcError as e:
        return e.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    return False


@pytest.mark.asyncio
@pytest.mark.parametrize("trigger", ["stop", "sigterm"])
async def test_stop_refuses_new_calls_and_finishes_calls_in_flight(served, trigger):
    server, servicer, channel = served
    server.install_signal_handlers()
    stub = matcher_pb2_grpc.MatcherStub(channel)
    in_flight = asyncio.ensure_future(
        stub.GetOrderBook(matcher_pb2.MatcherGetOrderBookRequest(symbol="BTC-USDT"), timeout=10)
    )
    await asyncio.wait_for(servicer.entered.wait(), 5)
    if trigger == "stop":
        stopping = asyncio.ensure_future(server.stop())
    else:
        os.kill(os.getpid(), signal.SIGTERM)
        stopping = asyncio.ensure_future(server.wait_for_termination())

    fresh = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    try:
        async with asyncio.timeout(5):
            while not await new_call_is_refused(matcher_pb2_grpc.MatcherStub(fresh)):
                pass
    finally:
        await fresh.close()
    assert not in_flight.done()
    servicer.release.set()
    response = await asyncio.wait_for(in_flight, 5)
    assert (response.symbol, response.sequence) == ("BTC-USDT", 7)
    await asyncio.wait_for(stopping, 10)


@pytest.mark.asyncio
async def test_health_watch_streams_changes_with_the_version_header(served):
    server, _, channel = served
    health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    assert dict(await watch.initial_metadata())[VERSION_HEADER] == "9.9.9-test"
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.NOT_SERVING
    await server.set_serving(True)
    second = await watch.read()
    assert second.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


@pytest.mark.asyncio
async def test_a_port_in_use_fails_the_start(served):
    server, _, _ = served
    second = GrpcServer(service_names=[], registrars=[], port=server.bound_port)
    with pytest.raises(OSError, match="cannot listen"):
        await second.start()
