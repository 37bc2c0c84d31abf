"""Reserves coalesced into ReserveBatch calls: each answered and failed as its unary call.

A stand-in UBSCore (a real grpc.aio server on loopback, answering from a table) serves
both Reserve and ReserveBatch, so every batched outcome is compared with what the unary
call gives for the same request: the response, a refusal with its ErrorInfo, a missed
deadline, an unreachable ubscore, and an ubscore that has no ReserveBatch at all.

| case                                  | expected                                           |
|---------------------------------------|----------------------------------------------------|
| 50 concurrent reserves                | fewer calls than orders, each its own answer       |
| a refused order                       | the unary call's status, details, ErrorInfo        |
| ubscore too slow for the deadline     | the unary call's DEADLINE_EXCEEDED answer          |
| no ubscore listening                  | UNAVAILABLE with reason UNAVAILABLE, as unary      |
| ubscore without ReserveBatch          | one unary Reserve per order from then on           |
| a caller gone before its batch left   | never sent                                         |
| a batch out, 3 then 4 waiting, fill 4 | the 4 leave at once, the next ones when it returns |
| closing                               | calls out cancelled as unary; queued UNAVAILABLE   |
| `most` = 8, 20 concurrent             | no batch above 8                                   |
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio

from gateway.upstream import ReserveBatcher, UpstreamAddresses, UpstreamError, Upstreams
from ordermesh.grpcx import errors
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import ubscore_pb2
from tests.waiting import eventually
from ubscore.batch import refusal

pytestmark = pytest.mark.asyncio

Context = grpc.aio.ServicerContext[Any, Any]
Response = ubscore_pb2.UBSCoreReserveResponse


def order(client_order_id: str) -> ubscore_pb2.UBSCoreReserveRequest:
    return ubscore_pb2.UBSCoreReserveRequest(account_id=1, client_order_id=client_order_id)


def answer(request: ubscore_pb2.UBSCoreReserveRequest) -> Response:
    """The table: "poor-..." has no funds; "n-<k>" gets order_id k."""
    name = request.client_order_id
    if name.startswith("poor"):
        raise OrdermeshError(RejectReason.INSUFFICIENT_FUNDS, f"no USDT for {name}")
    return Response(order_id=int(name.split("-")[1]), client_order_id=name, reserved_asset="USDT")


class UBSCore:
    """Reserve and (unless `batching` is off: a version before it) ReserveBatch, from the table.

    Records what it was asked; `open` cleared holds every answer back.
    """

    def __init__(self, *, batching: bool = True) -> None:
        self.batching = batching
        self.unary: list[str] = []
        self.batches: list[list[str]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def reserve(
        self, request: ubscore_pb2.UBSCoreReserveRequest, context: Context
    ) -> Response:
        self.unary.append(request.client_order_id)
        await self.open.wait()
        try:
            return answer(request)
        except OrdermeshError as e:
            await errors.abort(context, e)

    async def reserve_batch(
        self,
        request: ubscore_pb2.UBSCoreReserveBatchRequest,
        context: Context,
    ) -> ubscore_pb2.UBSCoreReserveBatchResponse:
        self.batches.append([r.client_order_id for r in request.requests])
        await self.open.wait()
        results = []
        for one in request.requests:
            try:
                results.append(ubscore_pb2.UBSCoreReserveResult(reserved=answer(one)))
            except OrdermeshError as e:
                results.append(ubscore_pb2.UBSCoreReserveResult(status=refusal(e)))
        return ubscore_pb2.UBSCoreReserveBatchResponse(results=results)

    def handler(self) -> grpc.GenericRpcHandler:
        """ordermesh.v1.UBSCore with just these methods: the others are UNIMPLEMENTED."""
        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Reserve": grpc.unary_unary_rpc_method_handler(
                self.reserve,
                request_deserializer=ubscore_pb2.UBSCoreReserveRequest.FromString,
                response_serializer=Response.SerializeToString,
            )
        }
        if self.batching:
            methods["ReserveBatch"] = grpc.unary_unary_rpc_method_handler(
                self.reserve_batch,
                request_deserializer=ubscore_pb2.UBSCoreReserveBatchRequest.FromString,
                response_serializer=ubscore_pb2.UBSCoreReserveBatchResponse.SerializeToString,
            )
        return grpc.method_handlers_generic_handler("ordermesh.v1.UBSCore", methods)


async def until(condition: Callable[[], bool], what: str) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, what=what, seconds=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def served(servicer: UBSCore) -> AsyncIterator[Upstreams]:
    """`servicer` on a loopback port, and upstream channels to it."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([servicer.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    upstream = connect(port)
    try:
        yield upstream
    finally:
        servicer.open.set()
        await upstream.close()
        await server.stop(None)


def connect(port: int) -> Upstreams:
    unused = f"127.0.0.1:{free_port()}"
    upstream = Upstreams(UpstreamAddresses(f"127.0.0.1:{port}", unused, unused), timeout=5.0)
    upstream.open()
    return upstream


@pytest_asyncio.fixture
async def ubscore() -> UBSCore:
    return UBSCore()


async def failure(call: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await call
    return caught.value


def same(batched: UpstreamError, unary: UpstreamError) -> None:
    """The client would see the same: code, message, trailers (ErrorInfo), reason."""
    assert batched.status.code == unary.status.code
    assert batched.status.details == unary.status.details
    assert batched.status.trailing_metadata == unary.status.trailing_metadata
    assert (batched.reason, batched.service) == (unary.reason, unary.service)


async def test_concurrent_reserves_share_calls_and_each_gets_its_own_answer(
    ubscore: UBSCore,
) -> None:
    async with served(ubscore) as upstream:
        answers = await asyncio.gather(*(upstream.reserve(order(f"n-{k}")) for k in range(50)))

    assert [(a.order_id, a.client_order_id) for a in answers] == [(k, f"n-{k}") for k in range(50)]
    assert sorted(name for batch in ubscore.batches for name in batch) == sorted(
        f"n-{k}" for k in range(50)
    )
    assert len(ubscore.batches) < 10
    assert ubscore.unary == []


async def test_a_refusal_is_what_the_unary_call_gives(ubscore: UBSCore) -> None:
    async with served(ubscore) as upstream:
        batched, fine = await asyncio.gather(
            failure(upstream.reserve(order("poor-1"))), upstream.reserve(order("n-2"))
        )
        unary = await failure(upstream.call("ubscore", upstream.ubscore.Reserve, order("poor-1")))

    same(batched, unary)
    assert batched.status.code is grpc.StatusCode.FAILED_PRECONDITION
    assert batched.reason == "INSUFFICIENT_FUNDS"
    assert fine.order_id == 2


async def test_a_missed_deadline_is_what_the_unary_call_gives(ubscore: UBSCore) -> None:
    ubscore.open.clear()
    async with served(ubscore) as upstream:
        batched = await failure(upstream.reserve(order("n-1"), within=0.2))
        unary = await failure(
            upstream.call("ubscore", upstream.ubscore.Reserve, order("n-1"), within=0.2)
        )

    same(batched, unary)
    assert batched.status.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert batched.reason == "UNAVAILABLE"


async def test_an_unreachable_ubscore_is_unavailable_as_for_the_unary_call() -> None:
    upstream = connect(free_port())
    try:
        batched = await failure(upstream.reserve(order("n-1"), within=3))
        unary = await failure(
            upstream.call("ubscore", upstream.ubscore.Reserve, order("n-1"), within=3)
        )
    finally:
        await upstream.close()

    assert batched.status.code is unary.status.code is grpc.StatusCode.UNAVAILABLE
    assert batched.reason == unary.reason == "UNAVAILABLE"
    assert batched.status.details.startswith("ubscore is unavailable")
    assert unary.status.details.startswith("ubscore is unavailable")


async def test_an_ubscore_without_reserve_batch_gets_unary_calls() -> None:
    old = UBSCore(batching=False)
    async with served(old) as upstream:
        first = await asyncio.gather(*(upstream.reserve(order(f"n-{k}")) for k in range(5)))
        refused = await failure(upstream.reserve(order("poor-9")))
        later = await upstream.reserve(order("n-7"))

    assert [a.order_id for a in first] == list(range(5))
    assert refused.reason == "INSUFFICIENT_FUNDS"
    assert later.order_id == 7
    assert sorted(old.unary) == sorted([*(f"n-{k}" for k in range(5)), "poor-9", "n-7"])


async def test_a_caller_gone_before_its_batch_left_is_never_sent(ubscore: UBSCore) -> None:
    ubscore.open.clear()
    async with served(ubscore) as upstream:
        batcher = ReserveBatcher(upstream, in_flight=1)
        first = asyncio.create_task(batcher.reserve(order("n-1"), 5.0))
        await until(lambda: ubscore.batches == [["n-1"]], "the first batch at ubscore")
        gone = asyncio.create_task(batcher.reserve(order("n-2"), 5.0))
        await until(lambda: batcher.waiting == 1, "the second order queued")
        gone.cancel()
        ubscore.open.set()
        assert (await first).order_id == 1
        assert (await batcher.reserve(order("n-3"), 5.0)).order_id == 3
        await batcher.close()

    assert gone.cancelled()
    assert ubscore.batches == [["n-1"], ["n-3"]]


async def test_while_a_batch_is_out_the_next_waits_for_it_or_for_fill_orders(
    ubscore: UBSCore,
) -> None:
    ubscore.open.clear()
    async with served(ubscore) as upstream:
        batcher = ReserveBatcher(upstream, fill=4)
        calls = [asyncio.create_task(batcher.reserve(order("n-1"), 5.0))]
        await until(lambda: ubscore.batches == [["n-1"]], "the first batch at ubscore")
        calls += [asyncio.create_task(batcher.reserve(order(f"n-{k}"), 5.0)) for k in (2, 3, 4)]
        await until(lambda: batcher.waiting == 3, "three orders waiting")
        calls.append(asyncio.create_task(batcher.reserve(order("n-5"), 5.0)))
        await until(lambda: len(ubscore.batches) == 2, "a second batch, the first still out")
        calls += [asyncio.create_task(batcher.reserve(order(f"n-{k}"), 5.0)) for k in (6, 7)]
        await until(lambda: batcher.waiting == 2, "two orders waiting")
        ubscore.open.set()
        answers = await asyncio.gather(*calls)
        await batcher.close()

    assert [a.order_id for a in answers] == list(range(1, 8))
    assert ubscore.batches == [["n-1"], ["n-2", "n-3", "n-4", "n-5"], ["n-6", "n-7"]]


async def test_closing_ends_the_sent_calls_as_unary_ones_and_refuses_the_queued(
    ubscore: UBSCore,
) -> None:
    ubscore.open.clear()
    async with served(ubscore) as upstream:
        batcher = ReserveBatcher(upstream, in_flight=1)
        upstream._reserves = batcher  # one batch at a time, to have one queued
        sent = asyncio.create_task(upstream.reserve(order("n-1")))
        await until(lambda: ubscore.batches == [["n-1"]], "the first batch at ubscore")
        queued = asyncio.create_task(failure(upstream.reserve(order("n-2"))))
        unary = asyncio.create_task(
            upstream.call("ubscore", upstream.ubscore.Reserve, order("n-3"))
        )
        await until(lambda: batcher.waiting == 1 and ubscore.unary == ["n-3"], "all three out")
        await upstream.close()
        ended = await asyncio.gather(sent, unary, return_exceptions=True)
        refused = await queued
        after = await failure(upstream.reserve(order("n-4")))

    assert [type(e) for e in ended] == [asyncio.CancelledError] * 2  # as the unary call ends
    assert refused.status.code is after.status.code is grpc.StatusCode.UNAVAILABLE
    assert refused.reason == after.reason == "UNAVAILABLE"
    assert ubscore.batches == [["n-1"]]


async def test_no_batch_holds_more_than_most(ubscore: UBSCore) -> None:
    async with served(ubscore) as upstream:
        batcher = ReserveBatcher(upstream, most=8)
        answers = await asyncio.gather(*(batcher.reserve(order(f"n-{k}"), 5.0) for k in range(20)))
        await batcher.close()

    assert [a.order_id for a in answers] == list(range(20))
    assert max(len(batch) for batch in ubscore.batches) <= 8
    assert sum(len(batch) for batch in ubscore.batches) == 20
