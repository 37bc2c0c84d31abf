"""The bus contract: one suite that every `Bus` implementation must pass.

A binding subclasses `BusContract` and provides three fixtures:
    bus: the Bus under test (closed by the binding).
    make_topic: async `make_topic(partitions) -> name` giving a fresh, empty topic.
    fresh_topic_name: a unique topic name not created yet (removed afterwards if created).
and sets `quiet_ms`, how long "nothing more arrives" is watched for.

Waits are conditions with deadlines: `read` loops on getmany until enough records came,
`wait_for` polls a probe until it holds; neither ever sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import pytest
import pytest_asyncio
from aiokafka.partitioner import murmur2

from ordermesh.bus.base import (
    Bus,
    BusError,
    Consumer,
    Headers,
    NoCommittedOffsetError,
    OffsetReset,
    Producer,
    ProducerFencedError,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)
from tests import waiting

MakeTopic = Callable[[int], Awaitable[str]]

DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.05


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def kafka_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner, computed independently of either bus."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def values(records: list[Record]) -> list[bytes]:
    return [record.value for record in records]


async def read(
    consumer: Consumer, count: int, *, seconds: float = DEADLINE_SECONDS
) -> list[Record]:
    """Read until `count` records came; fail the test if they do not within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    records: list[Record] = []
    while len(records) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            pytest.fail(f"read {len(records)} of {count} records in {seconds} s: {records}")
        records += await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
    return records


wait_for = functools.partial(
    waiting.eventually, seconds=DEADLINE_SECONDS, poll_seconds=POLL_SECONDS
)
"""Wait for a condition with this file's deadline and poll interval."""


class RecordingListener:
    """Records rebalance callbacks; tests wait on it for a condition to hold."""

    def __init__(self) -> None:
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self._changed = asyncio.Condition()

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        await self._add("revoked", revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        await self._add("assigned", assigned)

    async def _add(self, kind: str, partitions: frozenset[TopicPartition]) -> None:
        async with self._changed:
            self.events.append((kind, partitions))
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE_SECONDS), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            pytest.fail(f"{what}: not after {DEADLINE_SECONDS} s; events {self.events}")

    def assert_eager_protocol(self) -> None:
        """Assigned first; every later assignment preceded by revoking the previous one."""
        assert self.events[0][0] == "assigned"
        held = self.events[0][1]
        for (kind, partitions), (next_kind, _) in zip(self.events, self.events[1:], strict=False):
            if kind == "revoked":
                assert partitions == held
                assert next_kind == "assigned"
            else:
                held = partitions


class RestoringListener:
    """Restores partitions at a snapshot offset, as a state-bearing service does.

    The restore waits for `release`, standing for however long a snapshot load takes.
    """

    def __init__(self, consumer: Consumer, offset: int) -> None:
        self.restoring = asyncio.Event()
        self.release = asyncio.Event()
        self._consumer = consumer
        self._offset = offset

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        del revoked

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.restoring.set()
        await self.release.wait()
        for partition in assigned:
            self._consumer.seek(partition, self._offset)


class FailingListener:
    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        del revoked

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        raise RuntimeError(f"cannot restore {sorted(assigned)}")


class Clients:
    """Starts producers and consumers on one bus and stops whatever is left at the end."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._running: list[Producer | Consumer] = []

    async def producer(self, transactional_id: str | None = None) -> Producer:
        producer = self.bus.producer(transactional_id=transactional_id)
        await producer.start()
        self._running.append(producer)
        return producer

    async def consumer(
        self,
        *,
        group_id: str | None = None,
        read_committed: bool = True,
        auto_offset_reset: OffsetReset = "earliest",
        assign: list[TopicPartition] | None = None,
        subscribe: list[str] | None = None,
        listener: RebalanceListener | None = None,
    ) -> Consumer:
        consumer = self.bus.consumer(
            group_id=group_id, read_committed=read_committed, auto_offset_reset=auto_offset_reset
        )
        if assign is not None:
            consumer.assign(assign)
        if subscribe is not None:
            consumer.subscribe(subscribe, listener)
        await consumer.start()
        self._running.append(consumer)
        return consumer

    async def stop(self, client: Producer | Consumer) -> None:
        self._running.remove(client)
        await client.stop()

    async def stop_all(self) -> None:
        while self._running:
            await self._running.pop().stop()


class BusContract:
    """The behaviour services rely on; bound to each implementation by a subclass."""

    quiet_ms: ClassVar[int] = 50

    @pytest_asyncio.fixture
    async def clients(self, bus: Bus) -> AsyncIterator[Clients]:
        clients = Clients(bus)
        try:
            yield clients
        finally:
            await clients.stop_all()

    async def assert_quiet(self, consumer: Consumer) -> None:
        assert await consumer.getmany(timeout_ms=self.quiet_ms) == []

    # -- partitions, offsets, records -------------------------------------------------

    @pytest.mark.asyncio
    async def test_key_picks_kafka_default_partition(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(4)
        producer = await clients.producer()
        keys = [f"account-{i}".encode() for i in range(24)]
        for _ in range(2):
            acks = [await producer.send(topic, b"v", key=key) for key in keys]
            assert [ack.partition for ack in acks] == [kafka_partition(k, 4) for k in keys]
        assert {kafka_partition(k, 4) for k in keys} == {0, 1, 2, 3}
        consumer = await clients.consumer(assign=[TopicPartition(topic, p) for p in range(4)])
        for record in await read(consumer, 48):
            assert record.key is not None
            assert record.partition == kafka_partition(record.key, 4)

    @pytest.mark.asyncio
    async def test_offsets_increase_per_partition(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(2)
        producer = await clients.producer()
        acks = [await producer.send(topic, b"%d" % i, partition=i % 2) for i in range(10)]
        for partition in (0, 1):
            offsets = [ack.offset for ack in acks if ack.partition == partition]
            assert offsets == list(range(5))
        consumer = await clients.consumer(
            assign=[TopicPartition(topic, 0), TopicPartition(topic, 1)]
        )
        records = await read(consumer, 10)
        for partition in (0, 1):
            got = [(r.offset, r.value) for r in records if r.partition == partition]
            assert got == [(a.offset, a.value) for a in acks if a.partition == partition]

    @pytest.mark.asyncio
    async def test_concurrent_sends_reach_the_log_in_call_order(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(3)
        producer = await clients.producer()
        keys = [b"BTC-USDT", b"ETH-USDT", b"ETH-BTC"]
        acks = await asyncio.gather(
            *(producer.send(topic, b"%d" % i, key=keys[i % 3]) for i in range(60))
        )
        for key in keys:
            mine = [ack for ack in acks if ack.key == key]
            assert [ack.offset for ack in mine] == sorted(ack.offset for ack in mine)
            assert len({ack.partition for ack in mine}) == 1

    @pytest.mark.asyncio
    async def test_key_value_and_headers_round_trip(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        producer = await clients.producer()
        headers: Headers = (
            ("traceparent", b"00-4bf92f35-00f067aa-01"),
            ("empty", b""),
            ("twice", b"1"),
            ("twice", b"2"),
        )
        keyed = await producer.send(topic, b"\x00\xffbinary", key=b"BTC-USDT", headers=headers)
        keyless = await producer.send(topic, b"no key", partition=0)
        consumer = await clients.consumer(assign=[TopicPartition(topic, 0)])
        first, second = await read(consumer, 2)
        assert (first.key, first.value, first.headers) == (b"BTC-USDT", b"\x00\xffbinary", headers)
        assert (first.topic, first.partition, first.offset) == (topic, 0, keyed.offset)
        assert (second.key, second.value, second.headers) == (None, b"no key", ())
        assert second.offset == keyless.offset

    @pytest.mark.asyncio
    async def test_assigned_consumer_seeks(self, clients: Clients, make_topic: MakeTopic) -> None:
        topic = await make_topic(1)
        partition = TopicPartition(topic, 0)
        producer = await clients.producer()
        acks = [await producer.send(topic, b"m%d" % i) for i in range(5)]
        consumer = await clients.consumer(assign=[partition])
        assert consumer.assignment() == {partition}
        consumer.seek(partition, acks[2].offset)
        assert values(await read(consumer, 3)) == [b"m2", b"m3", b"m4"]
        assert await consumer.position(partition) == acks[-1].offset + 1
        consumer.seek(partition, 0)
        assert values(await read(consumer, 5)) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert await consumer.beginning_offsets([partition]) == {partition: 0}
        assert await consumer.end_offsets([partition]) == {partition: 5}

    @pytest.mark.asyncio
    async def test_getmany_wakes_when_a_record_arrives(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        producer = await clients.producer()
        consumer = await clients.consumer(assign=[TopicPartition(topic, 0)])
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Tasks run in creation order: the reader is waiting when the writer sends.
        reader = asyncio.create_task(consumer.getmany(timeout_ms=15_000))
        writer = asyncio.create_task(producer.send(topic, b"wake"))
        assert values(await reader) == [b"wake"]
        assert (await writer).value == b"wake"
        assert loop.time() - started < 10

    # -- consumer groups --------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_group_resumes_from_committed_offsets(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(2)
        group = unique("group")
        producer = await clients.producer()
        for i in range(6):
            await producer.send(topic, b"first-%d" % i, key=b"k%d" % i)
        reader = await clients.consumer(group_id=group, subscribe=[topic])
        assert sorted(values(await read(reader, 6))) == [b"first-%d" % i for i in range(6)]
        await reader.commit()
        for p in (0, 1):
            partition = TopicPartition(topic, p)
            assert await reader.committed(partition) == await reader.position(partition)
        await clients.stop(reader)
        for i in range(4):
            await producer.send(topic, b"second-%d" % i, key=b"k%d" % i)
        restarted = await clients.consumer(group_id=group, subscribe=[topic])
        assert sorted(values(await read(restarted, 4))) == [b"second-%d" % i for i in range(4)]
        await self.assert_quiet(restarted)

    @pytest.mark.asyncio
    async def test_reset_none_without_commit_raises(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        partition = TopicPartition(topic, 0)
        group = unique("strict")
        producer = await clients.producer()
        await producer.send(topic, b"a")
        await producer.send(topic, b"b")
        strict = await clients.consumer(
            group_id=group, auto_offset_reset="none", assign=[partition]
        )
        with pytest.raises(NoCommittedOffsetError):
            await strict.position(partition)
        with pytest.raises(NoCommittedOffsetError):
            await strict.getmany(timeout_ms=5_000)
        await strict.commit({partition: 1})
        resumed = await clients.consumer(
            group_id=group, auto_offset_reset="none", assign=[partition]
        )
        assert await resumed.position(partition) == 1
        assert values(await read(resumed, 1)) == [b"b"]

    @pytest.mark.asyncio
    async def test_group_splits_partitions_and_takes_over(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(4)
        everything = frozenset(TopicPartition(topic, p) for p in range(4))
        group = unique("split")
        producer = await clients.producer()
        for p in range(4):
            await producer.send(topic, b"one-%d" % p, partition=p)
        first_events, second_events = RecordingListener(), RecordingListener()
        first = await clients.consumer(group_id=group, subscribe=[topic], listener=first_events)
        assert first.assignment() == everything
        second = await clients.consumer(group_id=group, subscribe=[topic], listener=second_events)

        def split() -> bool:
            mine, theirs = first.assignment(), second.assignment()
            return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == everything

        await first_events.wait_until(split, "two members split the partitions")
        for member in (first, second):
            records = await read(member, len(member.assignment()))
            assert {r.topic_partition for r in records} == member.assignment()
            await member.commit()
        second_share = second.assignment()
        await clients.stop(second)
        await first_events.wait_until(lambda: first.assignment() == everything, "takeover")
        assert second_events.events[-1] == ("revoked", second_share)
        for p in range(4):
            await producer.send(topic, b"two-%d" % p, partition=p)
        # The survivor resumes the leaver's partitions from its commit: only the new records.
        assert sorted(values(await read(first, 4))) == [b"two-%d" % p for p in range(4)]
        await self.assert_quiet(first)
        first_events.assert_eager_protocol()
        assert ("revoked", everything) in first_events.events

    @pytest.mark.asyncio
    async def test_no_records_until_the_assigned_listener_returns(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        producer = await clients.producer()
        for i in range(4):
            await producer.send(topic, b"r%d" % i)
        consumer = await clients.consumer(group_id=unique("restore"))
        listener = RestoringListener(consumer, offset=2)
        consumer.subscribe([topic], listener)  # joins in the background: already started
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                await listener.restoring.wait()
            # Records from the committed offset would be wrong: the restore has not sought.
            await self.assert_quiet(consumer)
        finally:
            listener.release.set()  # else stopping the consumer would wait for the restore
        assert values(await read(consumer, 2)) == [b"r2", b"r3"]

    @pytest.mark.asyncio
    async def test_listener_failure_raises_from_getmany(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        producer = await clients.producer()
        await producer.send(topic, b"kept")
        consumer = await clients.consumer(
            group_id=unique("failing"), subscribe=[topic], listener=FailingListener()
        )
        with pytest.raises(BusError, match="cannot restore") as raised:
            await consumer.getmany(timeout_ms=5_000)
        assert isinstance(raised.value.__cause__, RuntimeError)
        assert values(await read(consumer, 1)) == [b"kept"]

    # -- transactions -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_committed_transactions_visible_aborted_never(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        partition = TopicPartition(topic, 0)
        producer = await clients.producer(transactional_id=unique("tx"))
        for batch, commit in (((b"a", b"b"), True), ((b"c",), False), ((b"d",), True)):
            await producer.begin_transaction()
            for value in batch:
                await producer.send(topic, value)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
        committed = await clients.consumer(assign=[partition])
        uncommitted = await clients.consumer(assign=[partition], read_committed=False)
        assert values(await read(committed, 3)) == [b"a", b"b", b"d"]
        await self.assert_quiet(committed)
        everything = await read(uncommitted, 4)
        assert values(everything) == [b"a", b"b", b"c", b"d"]
        # Each commit or abort marker takes an offset: a b [commit] c [abort] d [commit].
        assert [r.offset for r in everything] == [0, 1, 3, 5]
        for reader in (committed, uncommitted):
            await wait_for(
                functools.partial(reader.end_offsets, [partition]),
                lambda ends: ends == {partition: 7},
                what="end offset after three markers",
            )

    @pytest.mark.asyncio
    async def test_read_committed_stops_at_open_transaction(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        partition = TopicPartition(topic, 0)
        plain = await clients.producer()
        transactional = await clients.producer(transactional_id=unique("open"))
        await plain.send(topic, b"before")
        await transactional.begin_transaction()
        pending = await transactional.send(topic, b"pending")
        after = await plain.send(topic, b"after")
        committed = await clients.consumer(assign=[partition])
        uncommitted = await clients.consumer(assign=[partition], read_committed=False)
        assert values(await read(uncommitted, 3)) == [b"before", b"pending", b"after"]
        assert values(await read(committed, 1)) == [b"before"]
        await self.assert_quiet(committed)
        assert await committed.end_offsets([partition]) == {partition: pending.offset}
        assert await uncommitted.end_offsets([partition]) == {partition: after.offset + 1}
        await transactional.commit_transaction()
        assert values(await read(committed, 2)) == [b"pending", b"after"]

    @pytest.mark.asyncio
    async def test_offsets_sent_to_a_transaction_commit_with_it(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        source, sink = await make_topic(1), await make_topic(1)
        partition = TopicPartition(source, 0)
        group = unique("transform")
        feeder = await clients.producer()
        for i in range(3):
            await feeder.send(source, b"in-%d" % i)
        checker = await clients.consumer(group_id=group)

        async def transform(commit: bool) -> None:
            reader = await clients.consumer(group_id=group, subscribe=[source])
            inputs = await read(reader, 3)  # the whole input, every time: nothing committed
            assert values(inputs) == [b"in-0", b"in-1", b"in-2"]
            writer = await clients.producer(transactional_id=f"{group}-writer")
            await writer.begin_transaction()
            for record in inputs:
                await writer.send(sink, b"out-" + record.value)
            await writer.send_offsets_to_transaction({partition: inputs[-1].offset + 1}, group)
            await (writer.commit_transaction() if commit else writer.abort_transaction())
            await clients.stop(writer)
            await clients.stop(reader)

        await transform(commit=False)
        assert await checker.committed(partition) is None
        await transform(commit=True)
        await wait_for(
            lambda: checker.committed(partition), lambda c: c == 3, what="transactional commit"
        )
        output = await clients.consumer(assign=[TopicPartition(sink, 0)])
        assert values(await read(output, 3)) == [b"out-in-0", b"out-in-1", b"out-in-2"]
        await self.assert_quiet(output)
        resumed = await clients.consumer(group_id=group, subscribe=[source])
        assert await resumed.position(partition) == 3

    @pytest.mark.asyncio
    @pytest.mark.parametrize("first_call", ["send", "commit"])
    async def test_new_producer_fences_the_old_one(
        self, clients: Clients, make_topic: MakeTopic, first_call: str
    ) -> None:
        topic = await make_topic(1)
        transactional_id = unique("fenced")
        zombie = await clients.producer(transactional_id)
        await zombie.begin_transaction()
        await zombie.send(topic, b"zombie")
        successor = await clients.producer(transactional_id)
        if first_call == "send":
            with pytest.raises(ProducerFencedError):
                await zombie.send(topic, b"late")
        with pytest.raises(ProducerFencedError):
            await zombie.commit_transaction()
        await successor.begin_transaction()
        await successor.send(topic, b"successor")
        await successor.commit_transaction()
        reader = await clients.consumer(assign=[TopicPartition(topic, 0)])
        assert values(await read(reader, 1)) == [b"successor"]
        await self.assert_quiet(reader)

    @pytest.mark.asyncio
    async def test_a_fenced_producer_fails_an_offsets_only_transaction(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        # What an idle owner commits to notice a hand-over: offsets only, no record.
        topic = await make_topic(1)
        transactional_id = unique("idle")
        group = unique("owner-group")
        owner = await clients.producer(transactional_id)

        async def heartbeat() -> None:
            await owner.begin_transaction()
            await owner.send_offsets_to_transaction({TopicPartition(topic, 0): 0}, group)
            await owner.commit_transaction()

        await heartbeat()
        await clients.producer(transactional_id)  # the new owner fences it
        with pytest.raises(ProducerFencedError):
            await heartbeat()

    @pytest.mark.asyncio
    async def test_stop_aborts_an_open_transaction(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        abandoning = await clients.producer(unique("abandoning"))
        await abandoning.begin_transaction()
        await abandoning.send(topic, b"abandoned")
        await clients.stop(abandoning)
        plain = await clients.producer()
        await plain.send(topic, b"after")
        # Left open, the transaction would hold read_committed readers before "after".
        reader = await clients.consumer(assign=[TopicPartition(topic, 0)])
        assert values(await read(reader, 1)) == [b"after"]
        await self.assert_quiet(reader)

    @pytest.mark.asyncio
    async def test_transaction_misuse_is_refused(
        self, clients: Clients, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(1)
        producer = await clients.producer(unique("misuse"))
        with pytest.raises(BusError, match="outside a transaction"):
            await producer.send(topic, b"x")
        await producer.begin_transaction()
        offsets = {TopicPartition(topic, 0): 0}
        await producer.send_offsets_to_transaction(offsets, unique("group"))
        with pytest.raises(BusError, match="once per transaction"):
            await producer.send_offsets_to_transaction(offsets, unique("group"))
        await producer.abort_transaction()
        plain = await clients.producer()
        with pytest.raises(BusError):
            await plain.begin_transaction()

    # -- topics -----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_unknown_topic_raises(
        self, bus: Bus, clients: Clients, make_topic: MakeTopic, fresh_topic_name: str
    ) -> None:
        missing = fresh_topic_name
        with pytest.raises(UnknownTopicError):
            await bus.partitions(missing)
        producer = await clients.producer()
        with pytest.raises(UnknownTopicError):
            await producer.send(missing, b"x")
        with pytest.raises(UnknownTopicError):
            await clients.consumer(assign=[TopicPartition(missing, 0)])
        with pytest.raises(UnknownTopicError):
            await clients.consumer(group_id=unique("nowhere"), subscribe=[missing])
        existing = await make_topic(1)
        with pytest.raises(UnknownTopicError):
            await producer.send(existing, b"x", partition=1)
        consumer = await clients.consumer(assign=[TopicPartition(existing, 0)])
        consumer.assign([TopicPartition(missing, 0)])
        with pytest.raises(UnknownTopicError):
            await consumer.getmany(timeout_ms=1_000)
        with pytest.raises(UnknownTopicError):
            await bus.partitions(missing)  # asking did not create it

    @pytest.mark.asyncio
    async def test_create_topics_is_idempotent(self, bus: Bus, fresh_topic_name: str) -> None:
        name = fresh_topic_name
        await bus.create_topics([TopicSpec(name, 3)])
        await bus.create_topics([TopicSpec(name, 3)])
        assert await bus.partitions(name) == 3
        with pytest.raises(BusError, match=r"3 partitions.*2"):
            await bus.create_topics([TopicSpec(name, 2)])
        assert await bus.partitions(name) == 3
