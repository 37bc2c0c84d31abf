"""The snapshot store contract, on the in-memory bus and on real Kafka.

`BusSnapshotStore` must give back the newest complete snapshot of a key whatever happened to
the saves before: several keys, chunked snapshots larger than a Kafka record, a save cut
short, a save inside a transaction that was aborted, and a store that starts cold.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import ClassVar

import pytest
import pytest_asyncio
from aiokafka.partitioner import murmur2

from ordermesh.bus.base import (
    Bus,
    BusError,
    Headers,
    Producer,
    Record,
    TopicPartition,
    TopicSpec,
)
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from ordermesh.snapshots import (
    CHUNK_HEADER,
    DIGEST_HEADER,
    GENERATION_HEADER,
    BusSnapshotStore,
    SnapshotError,
)
from tests.servers.fixtures import TopicFactory

MakeTopic = Callable[[int], Awaitable[str]]


class FailingAfter:
    """A producer that forwards `sends` sends, then fails every one (a save cut short)."""

    def __init__(self, inner: Producer, sends: int) -> None:
        self.inner = inner
        self.left = sends

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
        if self.left == 0:
            raise BusError("the broker went away (fake)")
        self.left -= 1
        return await self.inner.send(topic, value, key=key, headers=headers, partition=partition)

    async def begin_transaction(self) -> None:
        await self.inner.begin_transaction()

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        await self.inner.send_offsets_to_transaction(offsets, group_id)

    async def commit_transaction(self) -> None:
        await self.inner.commit_transaction()

    async def abort_transaction(self) -> None:
        await self.inner.abort_transaction()


class SnapshotStoreContract:
    """Bound to a bus by a subclass providing the `bus` and `make_topic` fixtures."""

    chunk_bytes: ClassVar[int] = 1_000

    @pytest_asyncio.fixture
    async def store(self, bus: Bus, make_topic: MakeTopic) -> AsyncIterator[BusSnapshotStore]:
        store = BusSnapshotStore(bus, await make_topic(1), chunk_bytes=self.chunk_bytes)
        yield store
        await store.close()

    async def another(self, store: BusSnapshotStore, bus: Bus) -> BusSnapshotStore:
        """A cold store on the same topic, as after a restart."""
        return BusSnapshotStore(bus, store.topic, chunk_bytes=self.chunk_bytes)

    @pytest.mark.asyncio
    async def test_a_key_never_saved_has_no_snapshot(self, store: BusSnapshotStore) -> None:
        assert await store.load("ubscore/0") is None

    @pytest.mark.asyncio
    async def test_the_newest_save_of_each_key_is_loaded(
        self, store: BusSnapshotStore, bus: Bus
    ) -> None:
        for version in range(3):
            await store.save("ubscore/0", b"shard 0, version %d" % version)
        await store.save("ubscore/1", b"shard 1")
        cold = await self.another(store, bus)
        assert await cold.load("ubscore/0") == b"shard 0, version 2"
        assert await cold.load("ubscore/1") == b"shard 1"

    @pytest.mark.asyncio
    async def test_snapshots_larger_than_a_chunk_and_empty_ones_round_trip(
        self, store: BusSnapshotStore
    ) -> None:
        big = os.urandom(self.chunk_bytes * 5 + 17)
        await store.save("matcher/BTC-USDT", big)
        assert await store.load("matcher/BTC-USDT") == big
        await store.save("matcher/BTC-USDT", b"")
        assert await store.load("matcher/BTC-USDT") == b""

    @pytest.mark.asyncio
    async def test_a_save_cut_short_leaves_the_previous_snapshot(
        self, store: BusSnapshotStore, bus: Bus
    ) -> None:
        first, second = os.urandom(self.chunk_bytes * 3), os.urandom(self.chunk_bytes * 3)
        await store.save("ubscore/0", first)
        await store.save("ubscore/0", second)
        broken = FailingAfter(bus.producer(), sends=2)
        await broken.start()
        try:
            with pytest.raises(BusError):
                await store.save("ubscore/0", os.urandom(self.chunk_bytes * 3), producer=broken)
        finally:
            await broken.stop()
        assert await (await self.another(store, bus)).load("ubscore/0") == second
        # The next save (from a cold store too) completes and wins.
        cold = await self.another(store, bus)
        await cold.save("ubscore/0", b"third")
        await cold.close()
        assert await store.load("ubscore/0") == b"third"

    @pytest.mark.asyncio
    async def test_a_save_in_an_aborted_transaction_is_not_a_snapshot(
        self, store: BusSnapshotStore, bus: Bus
    ) -> None:
        await store.save("matcher/ETH-USDT", b"committed")
        producer = bus.producer(transactional_id=f"snapshots-{uuid.uuid4().hex[:8]}")
        await producer.start()
        try:
            # Aborted twice in a row: the second write goes to the slot of "committed".
            for attempt in (b"aborted", b"aborted again"):
                await producer.begin_transaction()
                await store.save("matcher/ETH-USDT", attempt * 500, producer=producer)
                await producer.abort_transaction()
                assert await (await self.another(store, bus)).load("matcher/ETH-USDT") == (
                    b"committed"
                )
            await producer.begin_transaction()
            await store.save("matcher/ETH-USDT", b"next" * 700, producer=producer)
            await producer.commit_transaction()
        finally:
            await producer.stop()
        assert await (await self.another(store, bus)).load("matcher/ETH-USDT") == b"next" * 700

    @pytest.mark.asyncio
    async def test_chunks_go_to_the_partition_of_their_key(
        self, bus: Bus, make_topic: MakeTopic
    ) -> None:
        topic = await make_topic(3)
        store = BusSnapshotStore(bus, topic, chunk_bytes=10)
        keys = [f"matcher/{symbol}" for symbol in ("BTC-USDT", "ETH-USDT", "ETH-BTC", "X-Y")]
        try:
            for key in keys:
                await store.save(key, key.encode() * 5)
            for key in keys:
                assert await store.load(key) == key.encode() * 5
        finally:
            await store.close()
        records = await read_topic(bus, topic, 3)
        for record in records:
            assert record.key is not None
            key = record.key.decode().split("#")[0]
            assert record.partition == int(murmur2(key.encode()) & 0x7FFFFFFF) % 3

    @pytest.mark.asyncio
    async def test_a_complete_snapshot_that_does_not_match_its_digest_is_an_error(
        self, store: BusSnapshotStore, bus: Bus
    ) -> None:
        headers = (
            (GENERATION_HEADER, b"1"),
            (CHUNK_HEADER, b"0/1"),
            (DIGEST_HEADER, hashlib.sha256(b"what was meant").hexdigest().encode()),
        )
        await send(bus, store.topic, b"ubscore/0#0/0", b"what arrived", headers)
        with pytest.raises(SnapshotError, match="does not match"):
            await store.load("ubscore/0")

    @pytest.mark.asyncio
    async def test_a_foreign_record_under_the_key_is_an_error(
        self, store: BusSnapshotStore, bus: Bus
    ) -> None:
        await send(bus, store.topic, b"ubscore/0#0/0", b"no headers", ())
        with pytest.raises(SnapshotError, match="not a snapshot chunk"):
            await store.load("ubscore/0")

    @pytest.mark.asyncio
    async def test_keys_are_checked(self, store: BusSnapshotStore) -> None:
        for key in ("", "a#b"):
            with pytest.raises(ValueError, match="snapshot key"):
                await store.load(key)


async def send(bus: Bus, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
    producer = bus.producer()
    await producer.start()
    try:
        await producer.send(topic, value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


async def read_topic(bus: Bus, topic: str, partitions: int) -> list[Record]:
    assigned = [TopicPartition(topic, i) for i in range(partitions)]
    consumer = bus.consumer()
    consumer.assign(assigned)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(assigned)
        records: list[Record] = []
        async with asyncio.timeout(20):
            for partition in assigned:
                consumer.seek(partition, 0)
                while await consumer.position(partition) < ends[partition]:
                    records += await consumer.getmany(timeout_ms=200)
        return records
    finally:
        await consumer.stop()


class TestMemorySnapshotStore(SnapshotStoreContract):
    @pytest_asyncio.fixture
    async def bus(self) -> AsyncIterator[MemoryBus]:
        bus = MemoryBus()
        yield bus
        await bus.close()

    @pytest.fixture
    def make_topic(self, bus: MemoryBus) -> MakeTopic:
        async def make(partitions: int) -> str:
            name = f"snapshots-{uuid.uuid4().hex[:10]}"
            await bus.create_topics([TopicSpec(name, partitions, compacted=True)])
            return name

        return make


@pytest.mark.integration
class TestKafkaSnapshotStore(SnapshotStoreContract):
    @pytest_asyncio.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
        bus = KafkaBus(kafka_bootstrap, client_id="snapshot-contract", delivery_timeout_ms=20_000)
        yield bus
        await bus.close()

    @pytest.fixture
    def make_topic(self, kafka_topic_factory: TopicFactory) -> MakeTopic:
        async def make(partitions: int) -> str:
            return await asyncio.to_thread(
                kafka_topic_factory,
                partitions,
                prefix="snapshots",
                config={"cleanup.policy": "compact"},
            )

        return make

    @pytest.mark.asyncio
    async def test_a_snapshot_larger_than_a_kafka_record_round_trips(
        self, bus: KafkaBus, make_topic: MakeTopic
    ) -> None:
        # Kafka refuses records over 1 MB by default; the default chunks stay below it.
        store = BusSnapshotStore(bus, await make_topic(1))
        big = os.urandom(3 * 1024 * 1024 + 5)
        try:
            await store.save("ubscore/0", big)
            assert await BusSnapshotStore(bus, store.topic).load("ubscore/0") == big
        finally:
            await store.close()
