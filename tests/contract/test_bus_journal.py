"""The bus contract, bound to the in-memory bus with a journal; and what the journal adds.

The whole contract runs on a journalled bus. The journal's own tests close a bus, reopen
one on the same directory, and compare everything a reader can see: records, offsets,
headers, timestamps, group offsets, transaction outcomes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from ordermesh.bus.base import BusError, Record, TopicPartition, TopicSpec
from ordermesh.bus.journal import FSYNC_POLICIES, Journal, JournalError
from ordermesh.bus.journal_files import FRAME, split_frames
from ordermesh.bus.memory import MemoryBus
from ordermesh.snapshots import BusSnapshotStore
from tests.contract.bus_contract import BusContract, MakeTopic, unique


class TestMemoryBusWithJournal(BusContract):
    @pytest_asyncio.fixture
    async def bus(self, tmp_path: Path) -> AsyncIterator[MemoryBus]:
        bus = MemoryBus(data_dir=tmp_path / "log")
        yield bus
        await bus.close()

    @pytest.fixture
    def make_topic(self, bus: MemoryBus) -> MakeTopic:
        async def make(partitions: int) -> str:
            name = unique("topic")
            await bus.create_topics([TopicSpec(name, partitions)])
            return name

        return make

    @pytest.fixture
    def fresh_topic_name(self) -> str:
        return unique("topic")


async def everything(bus: MemoryBus, topic: str, *, read_committed: bool) -> list[Record]:
    """Every record of `topic` a reader sees, read to the end."""
    partitions = [TopicPartition(topic, p) for p in range(await bus.partitions(topic))]
    consumer = bus.consumer(read_committed=read_committed)
    consumer.assign(partitions)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        records: list[Record] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            records += await consumer.getmany(timeout_ms=0)
        return records
    finally:
        await consumer.stop()


async def view(bus: MemoryBus, topic: str, group: str) -> dict[str, object]:
    """What readers can see of `topic`, and what `group` committed on it."""
    partitions = [TopicPartition(topic, p) for p in range(await bus.partitions(topic))]
    checker = bus.consumer(group_id=group)
    checker.assign(partitions)
    await checker.start()
    try:
        return {
            "committed_records": await everything(bus, topic, read_committed=True),
            "all_records": await everything(bus, topic, read_committed=False),
            "ends": await checker.end_offsets(partitions),
            "group": [await checker.committed(tp) for tp in partitions],
        }
    finally:
        await checker.stop()


async def write_history(bus: MemoryBus, topic: str, group: str) -> None:
    """Plain records with keys and headers, a committed and an aborted transaction, offsets."""
    await bus.create_topics([TopicSpec(topic, 2)])
    plain = bus.producer()
    await plain.start()
    for i in range(5):
        await plain.send(topic, b"v%d" % i, key=b"k%d" % i, headers=(("h", b"%d" % i), ("e", b"")))
    await plain.send(topic, b"keyless", partition=1)
    transactional = bus.producer(transactional_id="writer")
    await transactional.start()
    for commit in (True, False):
        await transactional.begin_transaction()
        for p in (0, 1):
            await transactional.send(topic, b"tx-%s" % str(commit).encode(), partition=p)
        await transactional.send_offsets_to_transaction({TopicPartition(topic, 0): 3}, group)
        await (transactional.commit_transaction() if commit else transactional.abort_transaction())
    reader = bus.consumer(group_id=group)
    reader.assign([TopicPartition(topic, 1)])
    await reader.start()
    await reader.commit({TopicPartition(topic, 1): 2})
    await reader.stop()
    await transactional.stop()
    await plain.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("fsync", FSYNC_POLICIES)
async def test_reopen_keeps_records_offsets_headers_and_group_offsets(
    tmp_path: Path, fsync: str
) -> None:
    first = MemoryBus(data_dir=tmp_path, fsync=fsync)  # type: ignore[arg-type]
    await write_history(first, "history", "group")
    before = await view(first, "history", "group")
    await first.close()
    second = MemoryBus(data_dir=tmp_path, fsync=fsync)  # type: ignore[arg-type]
    try:
        assert await view(second, "history", "group") == before
        assert before["group"] == [3, 2]
        assert [r.value for r in before["committed_records"]].count(b"tx-False") == 0  # type: ignore[attr-defined]
        producer = second.producer()
        await producer.start()
        ack = await producer.send("history", b"after", partition=0)
        assert ack.offset == before["ends"][TopicPartition("history", 0)]  # type: ignore[index]
        await producer.stop()
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_producer_epochs_survive_a_reopen(tmp_path: Path) -> None:
    first = MemoryBus(data_dir=tmp_path)
    await write_history(first, "history", "group")
    await first.close()
    _, recovered = Journal.open(tmp_path)  # the bus is closed: the directory is free
    assert recovered.epochs == {"writer": 0}
    assert recovered.topics == {"history": TopicSpec("history", 2)}


async def open_transaction(bus: MemoryBus, topic: str, group: str) -> None:
    await bus.create_topics([TopicSpec(topic, 2)])
    producer = bus.producer(transactional_id="crashing")
    await producer.start()
    await producer.begin_transaction()
    for p in (0, 1):
        await producer.send(topic, b"in-flight", partition=p)
    await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 1}, group)
    # No commit, no stop: the process dies here. Closing only closes the journal's files.


@pytest.mark.asyncio
async def test_a_transaction_open_at_a_crash_is_aborted_on_reopen(tmp_path: Path) -> None:
    first = MemoryBus(data_dir=tmp_path)
    await open_transaction(first, "crash", "group")
    await first.close()
    with capture_logs() as logs:
        second = MemoryBus(data_dir=tmp_path)
    try:
        assert [e["outcome"] for e in logs if "transaction" in e] == ["aborted", "aborted"]
        state = await view(second, "crash", "group")
        assert state["committed_records"] == []
        assert [r.value for r in state["all_records"]] == [b"in-flight"] * 2  # type: ignore[attr-defined]
        # The abort marker took an offset, and read_committed is no longer held back.
        assert state["ends"] == {TopicPartition("crash", 0): 2, TopicPartition("crash", 1): 2}
        assert state["group"] == [None, None]
    finally:
        await second.close()


def frames_of(path: Path) -> list[tuple[int, bytes]]:
    return split_frames(path, path.read_bytes())[0]


@pytest.mark.asyncio
async def test_a_decided_commit_gets_its_missing_markers_on_reopen(tmp_path: Path) -> None:
    first = MemoryBus(data_dir=tmp_path)
    await write_history(first, "history", "group")
    before = await view(first, "history", "group")
    await first.close()
    # Crash after the commit decision reached meta, before partition 1 got its marker:
    # cut partition 1's file at its first marker.
    path = tmp_path / "partitions" / "history-1.journal"
    first_marker = next(at for at, body in frames_of(path) if body[:1] == b"M")
    os.truncate(path, first_marker)
    second = MemoryBus(data_dir=tmp_path)
    try:
        after = await view(second, "history", "group")
        assert after["committed_records"] == before["committed_records"]
        assert b"tx-True" in [r.value for r in after["committed_records"]]  # type: ignore[attr-defined]
        assert after["group"] == [3, 2]
    finally:
        await second.close()


async def some_records(tmp_path: Path, count: int) -> list[Record]:
    bus = MemoryBus(data_dir=tmp_path)
    await bus.create_topics([TopicSpec("t", 1)])
    producer = bus.producer()
    await producer.start()
    acks = [await producer.send("t", b"value-%d" % i, key=b"k") for i in range(count)]
    await producer.stop()
    await bus.close()
    return acks


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", [1, 5, 9, 20])
async def test_a_torn_last_frame_is_truncated_with_a_warning(tmp_path: Path, cut: int) -> None:
    acks = await some_records(tmp_path, 3)
    path = tmp_path / "partitions" / "t-0.journal"
    os.truncate(path, path.stat().st_size - cut)  # the last write was cut short
    with capture_logs() as logs:
        bus = MemoryBus(data_dir=tmp_path)
    try:
        assert any(e["event"].startswith("journal tail torn") for e in logs)
        assert await everything(bus, "t", read_committed=True) == acks[:2]
        producer = bus.producer()
        await producer.start()
        assert (await producer.send("t", b"again")).offset == 2
        await producer.stop()
    finally:
        await bus.close()


@pytest.mark.asyncio
async def test_a_bad_checksum_at_the_tail_is_a_torn_frame(tmp_path: Path) -> None:
    acks = await some_records(tmp_path, 3)
    path = tmp_path / "partitions" / "t-0.journal"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    bus = MemoryBus(data_dir=tmp_path)
    try:
        assert await everything(bus, "t", read_committed=True) == acks[:2]
    finally:
        await bus.close()


@pytest.mark.asyncio
async def test_a_corrupt_frame_before_the_tail_is_refused(tmp_path: Path) -> None:
    await some_records(tmp_path, 3)
    path = tmp_path / "partitions" / "t-0.journal"
    second = frames_of(path)[1][0]
    data = bytearray(path.read_bytes())
    data[second + FRAME.size + 12] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=rf"t-0.journal: the frame at byte {second} fails"):
        MemoryBus(data_dir=tmp_path)
    with pytest.raises(JournalError, match=r"t-0\.journal"):  # refused again: not locked
        MemoryBus(data_dir=tmp_path)


@pytest.mark.asyncio
async def test_a_second_bus_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    bus = MemoryBus(data_dir=tmp_path)
    try:
        with pytest.raises(JournalError, match=rf"in use by another process \(pid {os.getpid()}"):
            MemoryBus(data_dir=tmp_path)
    finally:
        await bus.close()
    await MemoryBus(data_dir=tmp_path).close()


@pytest.mark.asyncio
async def test_a_closed_bus_refuses_writes(tmp_path: Path) -> None:
    bus = MemoryBus(data_dir=tmp_path)
    await bus.create_topics([TopicSpec("t", 1)])
    producer = bus.producer()
    await producer.start()
    await bus.close()
    with pytest.raises(BusError, match="closed"):
        await producer.send("t", b"late")


async def write_compacted(bus: MemoryBus) -> list[Record]:
    await bus.create_topics([TopicSpec("snapshots", 1, compacted=True)])
    plain = bus.producer()
    await plain.start()
    acks = [await plain.send("snapshots", v, key=k) for k, v in [(b"a", b"a1"), (b"b", b"b1")]]
    acks.append(await plain.send("snapshots", b"a2", key=b"a"))
    transactional = bus.producer(transactional_id="snapshotter")
    await transactional.start()
    for value, commit in ((b"b2", False), (b"a3", True)):
        await transactional.begin_transaction()
        acks.append(await transactional.send("snapshots", value, key=value[:1]))
        await (transactional.commit_transaction() if commit else transactional.abort_transaction())
    acks.append(await plain.send("snapshots", b"no key"))
    await transactional.stop()
    await plain.stop()
    return acks


@pytest.mark.asyncio
async def test_compacted_topics_keep_the_newest_record_per_key_on_reopen(tmp_path: Path) -> None:
    first = MemoryBus(data_dir=tmp_path)
    acks = await write_compacted(first)
    assert len(await everything(first, "snapshots", read_committed=True)) == 5
    await first.close()
    path = tmp_path / "partitions" / "snapshots-0.journal"
    size = path.stat().st_size
    for _ in range(2):  # compacting what is compacted changes nothing
        bus = MemoryBus(data_dir=tmp_path)
        try:
            kept = await everything(bus, "snapshots", read_committed=False)
            by_value = {ack.value: ack for ack in acks}
            # b1 is b's newest committed value: the aborted b2 does not replace it.
            assert kept == [by_value[b"b1"], by_value[b"a3"], by_value[b"no key"]]
            assert await everything(bus, "snapshots", read_committed=True) == kept
            end = (await view(bus, "snapshots", "g"))["ends"]
            assert end == {TopicPartition("snapshots", 0): acks[-1].offset + 1}
        finally:
            await bus.close()
        assert path.stat().st_size < size


@pytest.mark.asyncio
async def test_snapshots_load_after_compaction(tmp_path: Path) -> None:
    for generation in range(3):
        bus = MemoryBus(data_dir=tmp_path)
        store = BusSnapshotStore(bus, "ordermesh.snapshots", chunk_bytes=64)
        await store.create_topic()
        assert await store.load("unit") == (None if generation == 0 else b"x" * 300 * generation)
        await store.save("unit", b"x" * 300 * (generation + 1))
        await store.close()
        await bus.close()
