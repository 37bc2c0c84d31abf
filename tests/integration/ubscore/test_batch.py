"""ReserveBatch: each request answered as a unary Reserve would, checked against the log.

| batch                               | expected per request                                  |
|-------------------------------------|-------------------------------------------------------|
| o-1, o-1 again, o-2, o-3 (no funds) | reserved; its duplicate; reserved; INSUFFICIENT_FUNDS |
| a bad field (each of BAD_FIELDS)    | INVALID_ARGUMENT naming it, the unary call's bytes    |
| 300 orders of 3 accounts            | answers in request order, order_ids ascending, logged |
| 4097 requests                       | the call refused whole, nothing logged                |
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2
from grpc_status import rpc_status

from ordermesh.bus.base import Bus
from ordermesh.events import NewOrder
from ordermesh.grpcx.errors import error_info, reason_of
from ordermesh.model import RejectReason
from ordermesh.v1 import ubscore_pb2, ubscore_pb2_grpc
from tests.integration.ubscore.harness import (
    BUY,
    NOTIONAL,
    QUANTITY,
    SELL,
    USDT_UNIT,
    balances,
    commands,
    deposit,
    limit_order,
    new_orders,
    running,
)
from tests.integration.ubscore.test_requests import BAD_FIELDS
from ubscore.batch import MAX_BATCH

pytestmark = pytest.mark.asyncio

Request = ubscore_pb2.UBSCoreReserveRequest


def batch_of(requests: list[Request]) -> ubscore_pb2.UBSCoreReserveBatchRequest:
    return ubscore_pb2.UBSCoreReserveBatchRequest(requests=requests)


async def unary_refusal(stub: ubscore_pb2_grpc.UBSCoreAsyncStub, request: Request) -> bytes:
    """The serialized google.rpc.Status a unary Reserve of `request` ends with."""
    call = stub.Reserve(request, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    serialized: bytes = status.SerializeToString()
    return serialized


def reason(refusal: bytes) -> str:
    info = error_info(status_pb2.Status.FromString(refusal))
    assert info is not None
    name: str = info.reason
    return name


async def test_each_request_is_answered_as_reserve_would_and_only_acked_ones_are_logged(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 2 * NOTIONAL, "d-1")
        orders = ["o-1", "o-1", "o-2", "o-3"]
        answer = await service.stub.ReserveBatch(
            batch_of([limit_order(1, BUY, name) for name in orders]), timeout=10
        )
        logged = await commands(bus, service.topics)  # no wait: acked means logged
        again = await service.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=10)
        no_funds = await unary_refusal(service.stub, limit_order(1, BUY, "o-3"))
        held = await balances(service.stub, 1)

    first, duplicate, second, refused = answer.results
    kinds = [result.WhichOneof("result") for result in answer.results]
    assert kinds == ["reserved", "reserved", "reserved", "status"]
    assert (first.reserved.client_order_id, first.reserved.duplicate) == ("o-1", False)
    assert (first.reserved.reserved_asset, first.reserved.reserved_amount) == ("USDT", NOTIONAL)
    assert (duplicate.reserved.order_id, duplicate.reserved.duplicate) == (
        first.reserved.order_id,
        True,
    )
    assert duplicate.reserved.timestamp_ns == first.reserved.timestamp_ns
    assert (again.order_id, again.duplicate) == (first.reserved.order_id, True)
    assert second.reserved.order_id != first.reserved.order_id
    assert refused.status == no_funds
    assert reason(refused.status) == "INSUFFICIENT_FUNDS"
    assert new_orders(logged) == {(1, "o-1"): 1, (1, "o-2"): 1}
    assert {c.order_id for c in logged if isinstance(c, NewOrder)} == {
        first.reserved.order_id,
        second.reserved.order_id,
    }
    assert held == {"USDT": (0, 2 * NOTIONAL)}


async def test_bad_fields_are_refused_with_the_unary_calls_status_and_change_nothing(
    bus: Bus, prefix: str
) -> None:
    requests = []
    for i, (_, change, _) in enumerate(BAD_FIELDS):
        request = limit_order(1, BUY, f"bad-{i}")
        assert isinstance(change, dict)
        for name, value in change.items():
            setattr(request, name, value)
        requests.append(request)
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        answer = await service.stub.ReserveBatch(batch_of(requests), timeout=10)
        unary = [await unary_refusal(service.stub, request) for request in requests]
        logged = await commands(bus, service.topics)
        held = await balances(service.stub, 1)

    assert [result.status for result in answer.results] == unary
    assert [reason(result.status) for result in answer.results] == [
        expected.name for _, _, expected in BAD_FIELDS
    ]
    assert logged == []
    assert held == {"USDT": (10 * USDT_UNIT, 0)}


async def test_answers_keep_the_request_order_and_every_accepted_order_is_logged_once(
    bus: Bus, prefix: str
) -> None:
    names = [(1 + i % 3, f"m-{i}") for i in range(300)]
    async with running(bus, prefix) as service:
        for account in (1, 2, 3):
            await deposit(service.stub, account, "BTC", 100 * QUANTITY, f"d-{account}")
        answer = await service.stub.ReserveBatch(
            batch_of([limit_order(account, SELL, name) for account, name in names]), timeout=20
        )
        logged = await commands(bus, service.topics)

    reserved = [result.reserved for result in answer.results]
    assert [result.WhichOneof("result") for result in answer.results] == ["reserved"] * 300
    assert [r.client_order_id for r in reserved] == [name for _, name in names]
    order_ids = [r.order_id for r in reserved]
    assert order_ids == sorted(order_ids)
    assert len(set(order_ids)) == 300
    assert new_orders(logged) == dict.fromkeys(names, 1)


async def test_a_batch_over_the_limit_is_refused_whole(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        call = service.stub.ReserveBatch(
            batch_of([limit_order(1, BUY, f"x-{i}") for i in range(MAX_BATCH + 1)]), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        refused_with = await reason_of(call)
        logged = await commands(bus, service.topics)

    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused_with is RejectReason.INVALID_ARGUMENT
    assert f"at most {MAX_BATCH}" in (failure.value.details() or "")
    assert logged == []
