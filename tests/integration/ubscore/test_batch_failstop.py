"""ReserveBatch around a produce whose outcome is unknown, and a batch caller that gives up.

A batch is reserved as unary Reserves would be (`LogWriter.reserve_each`); these check the two
waits of the ack path for a whole batch: every request of a failed transaction is refused
UNAVAILABLE and the service stops; a caller gone before the log answered cuts nothing short.
The bus is the in-memory one behind the producer fake of test_failstop.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import status_pb2

from ordermesh.bus.memory import MemoryBus
from ordermesh.grpcx.errors import error_info
from ordermesh.model import AccountId
from ordermesh.runtime import EXIT_FATAL
from ordermesh.v1 import ubscore_pb2
from tests.integration.ubscore.harness import (
    BUY,
    NOTIONAL,
    USDT_UNIT,
    commands,
    deposit,
    limit_order,
    new_orders,
    running,
)
from tests.integration.ubscore.test_failstop import FlakyBus

pytestmark = pytest.mark.asyncio

UNAVAILABLE_CODE = grpc.StatusCode.UNAVAILABLE.value[0]


def batch_of(*names: str) -> ubscore_pb2.UBSCoreReserveBatchRequest:
    return ubscore_pb2.UBSCoreReserveBatchRequest(
        requests=[limit_order(1, BUY, name) for name in names]
    )


async def test_a_lost_transaction_refuses_every_request_of_the_batch_and_stops(
    prefix: str,
) -> None:
    bus = FlakyBus(MemoryBus())
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        bus.producer_fake.fail = "lost"
        answer = await service.stub.ReserveBatch(batch_of("o-1", "o-1", "o-2"), timeout=10)

        assert [result.WhichOneof("result") for result in answer.results] == ["status"] * 3
        for result in answer.results:
            status = status_pb2.Status.FromString(result.status)
            info = error_info(status)
            assert info is not None
            assert (status.code, info.reason) == (
                grpc.StatusCode.UNAVAILABLE.value[0],
                "UNAVAILABLE",
            )
        assert await service.exit_status() == EXIT_FATAL
        # Never rolled back: both orders stay frozen in the dead process's state.
        core = service.service.writer.core
        assert [(b.available, b.frozen) for b in core.balances(AccountId(1))] == [
            (10 * USDT_UNIT - 2 * NOTIONAL, 2 * NOTIONAL)
        ]


async def test_a_batch_caller_that_gives_up_does_not_cut_the_produce_short(prefix: str) -> None:
    bus = FlakyBus(MemoryBus())
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        fake = bus.producer_fake
        fake.hold = asyncio.Event()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await service.stub.ReserveBatch(batch_of("o-1", "o-2"), timeout=0.5)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        fake.hold.set()
        fake.hold = None
        retry = await service.stub.ReserveBatch(batch_of("o-1", "o-2"), timeout=10)

        assert [result.reserved.duplicate for result in retry.results] == [True, True]
        assert new_orders(await commands(bus.inner, service.topics)) == {
            (1, "o-1"): 1,
            (1, "o-2"): 1,
        }
        assert service.service.lifecycle.serving
