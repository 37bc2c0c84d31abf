"""ubscore's transactional group commit and its hand-over by fencing, in this process.

Each test runs on the memory bus and on Kafka (`bus`). Two instances of one shard share the
bus: the owner ("blue", active) and a standby ("green"). Promoting green fences blue, which
stops with EXIT_FENCED and answers UNAVAILABLE; green answers a retry from the log; a
restarted blue finds green's owner record and stands by instead of fencing it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from ordermesh.bus.base import Bus
from ordermesh.bus.memory import MemoryBus
from ordermesh.handover import STANDBY_SUFFIX, OwnerRecord
from ordermesh.runtime import EXIT_FATAL, EXIT_FENCED
from ordermesh.v1 import admin_pb2, admin_pb2_grpc
from tests.integration.ubscore.harness import (
    BUY,
    NOT_SERVING,
    NOTIONAL,
    SERVING,
    USDT_UNIT,
    Running,
    balances,
    deposit,
    eventually,
    health_status,
    limit_order,
    read_all,
    running,
)
from ubscore.service import SERVICE_NAME

pytestmark = pytest.mark.asyncio

STANDBY_HEALTH = SERVICE_NAME + STANDBY_SUFFIX


def admin(service: Running) -> Any:
    return admin_pb2_grpc.AdminStub(service.channel)


async def role_of(service: Running) -> admin_pb2.AdminGetRoleResponse:
    response: admin_pb2.AdminGetRoleResponse = await admin(service).GetRole(
        admin_pb2.AdminGetRoleRequest(), timeout=5
    )
    return response


@contextlib.asynccontextmanager
async def standby(bus: Bus, prefix: str, instance: str) -> AsyncIterator[Running]:
    """A second instance of the shard, started as standby, once it is caught up."""
    async with running(bus, prefix, wait=False, role="standby", instance=instance) as green:
        await eventually(
            lambda: role_of(green), lambda r: r.caught_up, what=f"{instance} caught up"
        )
        yield green


async def test_concurrent_requests_share_transactions(bus: Bus, prefix: str) -> None:
    # A linger, so batches form on the memory bus too, where a commit takes no time.
    async with running(bus, prefix, commit_linger_ms=5.0) as service:
        await deposit(service.stub, 1, "USDT", 1_000 * USDT_UNIT, "d-1")
        orders = [limit_order(1, BUY, f"o-{i}") for i in range(200)]
        await asyncio.gather(*(service.stub.Reserve(order, timeout=20) for order in orders))
        logged = await read_all(bus, service.topics.orders)
    assert len(logged) == 200
    # Every transaction leaves one commit marker, which takes an offset: 200 records in few
    # transactions span few more than 200 offsets (one per record, one transaction each: 400).
    spans = {
        partition: max(r.offset for r in logged if r.partition == partition) + 1
        for partition in {r.partition for r in logged}
    }
    markers = sum(spans.values()) - len(logged)
    assert markers < 50, f"{markers} transactions for 200 concurrent reserves"


async def test_promotion_fences_the_owner_and_the_standby_answers_from_the_log(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix, instance="blue") as blue:
        await deposit(blue.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        acked = await blue.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=10)
        async with standby(bus, prefix, "green") as green:
            assert await health_status(green.channel, SERVICE_NAME) == NOT_SERVING
            assert await health_status(green.channel, STANDBY_HEALTH) == SERVING
            refused = green.stub.Reserve(limit_order(1, BUY, "o-2"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await refused
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "standby" in (failure.value.details() or "")

            promoted = await admin(green).Promote(admin_pb2.AdminPromoteRequest(), timeout=20)
            assert promoted.role == admin_pb2.ROLE_ACTIVE
            assert await health_status(green.channel, SERVICE_NAME) == SERVING
            assert await health_status(green.channel, STANDBY_HEALTH) == NOT_SERVING

            # Blue is fenced by its next transaction (here its idle heartbeat) and stops.
            assert await blue.exit_status() == EXIT_FENCED
            assert "fenced" in (blue.service.lifecycle.failure or "")
            assert (await role_of(green)).role == admin_pb2.ROLE_ACTIVE

            retry = await green.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=10)
            assert (retry.duplicate, retry.order_id) == (True, acked.order_id)
            await green.stub.Reserve(limit_order(1, BUY, "o-2"), timeout=10)
            assert await balances(green.stub, 1) == {
                "USDT": (10 * USDT_UNIT - 2 * NOTIONAL, 2 * NOTIONAL)
            }


async def test_a_fenced_owner_fails_its_calls_in_flight_unavailable(prefix: str) -> None:
    bus = MemoryBus()  # fencing is instant there: the call is in flight when it happens
    async with running(bus, prefix, instance="blue") as blue:
        await deposit(blue.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        # What a new owner does first: start a producer under the shard's transactional id.
        usurper = bus.producer(transactional_id=blue.service.settings.transactional_id)
        await usurper.start()
        call = blue.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not blue.service.lifecycle.serving
        assert await blue.exit_status() == EXIT_FENCED
        await usurper.stop()
    logged = await read_all(bus, blue.topics.orders)
    assert logged == []  # its transaction was aborted by the fence


async def test_a_restarted_old_owner_stands_by_and_never_fences_back(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix, instance="blue") as blue:
        await deposit(blue.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        async with standby(bus, prefix, "green") as green:
            await admin(green).Promote(admin_pb2.AdminPromoteRequest(), timeout=20)
            assert await blue.exit_status() == EXIT_FENCED
            # Blue restarts as it was configured (role active): the owner record wins.
            async with running(bus, prefix, wait=False, instance="blue") as again:
                await eventually(
                    lambda: role_of(again),
                    lambda r: r.role == admin_pb2.ROLE_STANDBY and r.caught_up,
                    what="the restarted blue standing by",
                )
                await deposit(green.stub, 1, "USDT", USDT_UNIT, "d-2")
                assert (await role_of(green)).role == admin_pb2.ROLE_ACTIVE
                assert not green.run.done()
            # Green restarting (a fail-stop restart) is still the owner: it comes back active.
        async with running(bus, prefix, instance="green", role="standby") as back:
            assert (await role_of(back)).role == admin_pb2.ROLE_ACTIVE
            assert await balances(back.stub, 1) == {"USDT": (11 * USDT_UNIT, 0)}


async def test_a_snapshot_due_after_the_service_stopped_does_not_hold_up_the_exit(
    prefix: str,
) -> None:
    async with running(MemoryBus(), prefix, snapshot_every=1) as service:
        started = time.monotonic()
        service.service.lifecycle.fence("fenced (test)")
        service.service.schedule.note(1)  # due, but no longer live: nothing to take
        assert await service.exit_status() == EXIT_FENCED
        # A loop that never yields blocks every timer: only the wall clock can tell.
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(("owner", "status"), [("green", EXIT_FENCED), (None, EXIT_FATAL)])
async def test_a_fail_stop_is_a_fence_when_the_owner_record_names_another(
    prefix: str, owner: str | None, status: int
) -> None:
    """A commit the broker failed without naming the fence still ends as a hand-over."""
    bus = MemoryBus()
    async with running(bus, prefix, instance="blue") as blue:
        if owner is not None:  # what the new owner writes right after fencing
            producer = bus.producer(transactional_id=f"{prefix}owner-writer")
            await producer.start()
            try:
                record = OwnerRecord(blue.service._store, blue.service.settings.transactional_id)
                await record.save(owner, producer)
            finally:
                await producer.stop()
        blue.service.lifecycle.fail("a transaction failed; its outcome is unknown (test)")
        assert await blue.exit_status() == status
