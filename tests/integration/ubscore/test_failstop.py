"""Fail-stop when a produce's outcome is unknown, and the ack path's waits around it.

The bus is the in-memory one behind a producer fake that can hold a send, fail it with
ProduceOutcomeUnknownError, or fail a transaction's commit after it committed (the case that
makes rolling back a reservation wrong). Everything else is real: gRPC, the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.bus.base import (
    BusError,
    Consumer,
    Headers,
    OffsetReset,
    ProduceOutcomeUnknownError,
    Producer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
)
from ordermesh.bus.memory import MemoryBus
from ordermesh.grpcx.errors import reason_of
from ordermesh.model import AccountId, RejectReason
from ordermesh.runtime import EXIT_FATAL
from ordermesh.v1 import ubscore_pb2_grpc
from tests.integration.ubscore.harness import (
    BUY,
    NOTIONAL,
    SERVING,
    USDT_UNIT,
    balances,
    commands,
    deposit,
    eventually,
    health_status,
    limit_order,
    new_orders,
    running,
    settings,
)
from ubscore import consumer
from ubscore.bootstrap import build

pytestmark = pytest.mark.asyncio

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FlakyProducer:
    """A Producer that forwards to a real one, except when told to hold or fail a send."""

    def __init__(self, inner: Producer) -> None:
        self.inner = inner
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()
        self.fail: str | None = None
        """None: forward; "lost": a send raises without writing; "committed": a commit
        commits, then raises."""

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Record:
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        if self.fail == "lost":
            raise ProduceOutcomeUnknownError(f"send to {topic}: no acknowledgement (fake)")
        return await self.inner.send(topic, value, key=key, headers=headers, partition=partition)

    async def begin_transaction(self) -> None:
        await self.inner.begin_transaction()

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        await self.inner.send_offsets_to_transaction(offsets, group_id)

    async def commit_transaction(self) -> None:
        await self.inner.commit_transaction()
        if self.fail == "committed":
            raise ProduceOutcomeUnknownError("commit: connection lost after the commit")

    async def abort_transaction(self) -> None:
        await self.inner.abort_transaction()


class UnreachableConsumer:
    """A Consumer that forwards to a real one; end_offsets fails while `bus.unreachable`."""

    def __init__(self, inner: Consumer, bus: FlakyBus) -> None:
        self.inner = inner
        self.bus = bus

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        self.inner.subscribe(topics, listener)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self.inner.assign(partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        return self.inner.assignment()

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.inner.seek(partition, offset)

    async def position(self, partition: TopicPartition) -> int:
        return await self.inner.position(partition)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> list[Record]:
        return await self.inner.getmany(timeout_ms, max_records)

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        await self.inner.commit(offsets)

    async def committed(self, partition: TopicPartition) -> int | None:
        return await self.inner.committed(partition)

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await self.inner.beginning_offsets(partitions)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        if self.bus.unreachable:
            raise BusError("no broker answers (fake)")
        return await self.inner.end_offsets(partitions)


class FlakyBus:
    """A MemoryBus whose transactional producers are `FlakyProducer`s (the last one is
    `flaky`), and whose consumers cannot get end offsets while `unreachable`."""

    def __init__(self, inner: MemoryBus) -> None:
        self.inner = inner
        self.flaky: FlakyProducer | None = None
        self.unreachable = False

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        inner = self.inner.producer(transactional_id=transactional_id)
        if transactional_id is None:
            return inner  # the snapshot store's own
        self.flaky = FlakyProducer(inner)
        return self.flaky

    def consumer(
        self,
        *,
        group_id: str | None = None,
        read_committed: bool = True,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> Consumer:
        inner = self.inner.consumer(
            group_id=group_id, read_committed=read_committed, auto_offset_reset=auto_offset_reset
        )
        return UnreachableConsumer(inner, self)

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        await self.inner.create_topics(specs)

    async def partitions(self, topic: str) -> int:
        return await self.inner.partitions(topic)

    async def close(self) -> None:
        await self.inner.close()

    @property
    def producer_fake(self) -> FlakyProducer:
        assert self.flaky is not None
        return self.flaky


@contextlib.asynccontextmanager
async def watching_health(channel: grpc.aio.Channel) -> AsyncIterator[Any]:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    try:
        yield call
    finally:
        call.cancel()


class CountingClock:
    """Unix-ns timestamps; counts calls, so a test knows a request reached the core."""

    def __init__(self) -> None:
        self.calls = 0
        self._ticks = itertools.count(1_700_000_000_000_000_000)

    def __call__(self) -> int:
        self.calls += 1
        return next(self._ticks)


@pytest.mark.parametrize("outcome", ["lost", "committed"])
async def test_an_unknown_produce_outcome_fails_the_call_and_stops_the_service(
    prefix: str, outcome: str
) -> None:
    memory = MemoryBus()
    bus = FlakyBus(memory)
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        async with watching_health(service.channel) as health:
            assert (await health.read()).status == SERVING
            bus.producer_fake.fail = outcome
            call = service.stub.Reserve(limit_order(1, BUY, "o-1"))
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await reason_of(call) == RejectReason.UNAVAILABLE
            assert "same client_order_id" in (failure.value.details() or "")
            assert (await health.read()).status == NOT_SERVING
        assert await service.exit_status() == EXIT_FATAL
        assert "outcome is unknown" in (service.service.lifecycle.failure or "")
        # Never rolled back: the funds stay frozen in the dead process's state.
        core = service.service.writer.core
        assert [(b.available, b.frozen) for b in core.balances(AccountId(1))] == [
            (9 * USDT_UNIT, NOTIONAL)
        ]

    # The restart rebuilds from the log; a retry with the same id never makes a second order.
    async with running(memory, prefix) as restarted:
        in_log = outcome == "committed"
        frozen = NOTIONAL if in_log else 0
        assert await balances(restarted.stub, 1) == {"USDT": (10 * USDT_UNIT - frozen, frozen)}
        retry = await restarted.stub.Reserve(limit_order(1, BUY, "o-1"))
        assert retry.duplicate is in_log
        assert new_orders(await commands(memory, restarted.topics)) == {(1, "o-1"): 1}


async def test_a_duplicate_waits_for_the_original_to_be_logged(prefix: str) -> None:
    bus = FlakyBus(MemoryBus())
    clock = CountingClock()
    async with running(bus, prefix, clock=clock) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        fake = bus.producer_fake
        fake.hold = asyncio.Event()
        original = asyncio.ensure_future(service.stub.Reserve(limit_order(1, BUY, "o-1")))
        await asyncio.wait_for(fake.held.wait(), 10)
        calls = clock.calls
        duplicate = asyncio.ensure_future(service.stub.Reserve(limit_order(1, BUY, "o-1")))
        await eventually(
            lambda: asyncio.sleep(0, clock.calls),
            lambda count: count > calls,
            what="the duplicate reaching the core",
        )
        assert not duplicate.done()
        assert await commands(bus.inner, service.topics) == []

        fake.hold.set()
        first, second = await asyncio.gather(original, duplicate)

        assert first.order_id == second.order_id
        assert (first.duplicate, second.duplicate) == (False, True)
        assert new_orders(await commands(bus.inner, service.topics)) == {(1, "o-1"): 1}


async def test_a_caller_that_gives_up_does_not_cut_the_produce_short(prefix: str) -> None:
    bus = FlakyBus(MemoryBus())
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        fake = bus.producer_fake
        fake.hold = asyncio.Event()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await service.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=0.5)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        fake.hold.set()
        fake.hold = None
        retry = await service.stub.Reserve(limit_order(1, BUY, "o-1"))

        assert retry.duplicate
        assert new_orders(await commands(bus.inner, service.topics)) == {(1, "o-1"): 1}
        assert service.service.lifecycle.serving


async def test_not_serving_while_recovering(prefix: str) -> None:
    service = build(settings(prefix), MemoryBus())
    await service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        assert await health_status(channel) == NOT_SERVING
        stub = ubscore_pb2_grpc.UBSCoreStub(channel)
        reserve = stub.Reserve(limit_order(1, BUY, "o-1"))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await reserve
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "recovering" in (failure.value.details() or "")

        run = asyncio.create_task(service.run())
        await asyncio.wait_for(service.wait_serving(), 10)
        assert await health_status(channel) == SERVING
        await service.stop()
        assert await asyncio.wait_for(run, 10) == 0
    finally:
        await channel.close()


async def test_a_snapshot_of_another_configuration_is_refused(prefix: str) -> None:
    memory = MemoryBus()
    async with running(memory, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
    # The graceful stop saved a snapshot taken with order_window 1000.
    async with running(memory, prefix, wait=False, order_window=500) as refused:
        assert await refused.exit_status() == EXIT_FATAL
        failure = refused.service.lifecycle.failure or ""
        assert "order_window 1000 (this instance: 500)" in failure


async def test_health_follows_whether_the_bus_answers(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "PROBE_SECONDS", 0.05)
    bus = FlakyBus(MemoryBus())
    async with running(bus, prefix) as service, watching_health(service.channel) as health:
        assert (await health.read()).status == SERVING
        bus.unreachable = True
        assert (await health.read()).status == NOT_SERVING
        bus.unreachable = False
        assert (await health.read()).status == SERVING
        # Reads alone do not put the state in doubt: no fail-stop, the service still answers.
        assert not service.run.done()
        assert await balances(service.stub, 1) == {}
