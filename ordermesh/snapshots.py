"""Snapshot storage for state-bearing services: a port, and an adapter over the bus.

A service saves its state under a key (e.g. "ubscore/0", "matcher/BTC-USDT") and loads the
newest complete copy at start-up; recovery then replays the log from the offsets the snapshot
names. `BusSnapshotStore` keeps snapshots in a compacted topic, so the log holds them too and
no other store is needed.

A snapshot can outgrow what one Kafka record may hold (1 MB by default), so it is written as
chunks. Each chunk is a record whose key names the snapshot key, a slot (0 or 1) and the
chunk's index, and whose headers carry the snapshot's generation, the chunk's place and the
SHA-256 of the whole snapshot. Every chunk of a key goes to the key's partition (Kafka's
default partitioner applied to the bare key), so one partition holds them all. A save writes
the slot that does not hold the newest complete snapshot: a save cut short leaves that slot
incomplete and the other one intact, and compaction (last value per chunk key) never leaves
more than two snapshots' worth of chunks per key.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from aiokafka.partitioner import murmur2

from ordermesh.bus.base import (
    Bus,
    Consumer,
    Producer,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)

SNAPSHOTS: Final = "ordermesh.snapshots"
"""The compacted topic of snapshots, one key per snapshotted unit (shard, symbol)."""
SNAPSHOT_PARTITIONS: Final = 1
"""Partitions of the snapshot topic: a few keys, read once at start-up."""
DEFAULT_CHUNK_BYTES: Final = 512 * 1024
"""Snapshot bytes per record: half of Kafka's default maximum record size."""

GENERATION_HEADER: Final = "ordermesh-snapshot-generation"
CHUNK_HEADER: Final = "ordermesh-snapshot-chunk"
DIGEST_HEADER: Final = "ordermesh-snapshot-sha256"
_SLOTS: Final = (0, 1)
_POLL_MS: Final = 200


class SnapshotError(Exception):
    """A snapshot that cannot be read back as written (corrupt, foreign or unreadable)."""


class SnapshotStore(Protocol):
    """Where a service keeps its snapshots; the newest complete one per key wins."""

    async def load(self, key: str) -> bytes | None:
        """The newest complete snapshot saved under `key`, or None if there is none."""

    async def save(self, key: str, data: bytes, *, producer: Producer | None = None) -> None:
        """Store `data` as the newest snapshot of `key`, once the log has all of it.

        Args:
            key: what the snapshot is of, e.g. "ubscore/0".
            data: the snapshot's bytes.
            producer: a started producer to write with (e.g. a transactional one, inside
                the caller's open transaction); the store's own when None.
        """


@dataclass(frozen=True, slots=True)
class _Chunk:
    generation: int
    index: int
    count: int
    digest: str
    value: bytes


@dataclass(frozen=True, slots=True)
class _Found:
    """What a scan of a key's records found: the newest complete snapshot, if any."""

    data: bytes | None
    slot: int
    """The slot holding `data` (meaningless when data is None)."""
    generation: int
    """The highest generation seen in any chunk of the key, complete or not; 0 if none."""


class BusSnapshotStore:
    """Snapshots in a compacted topic of a bus (see the module docstring for the layout).

    Args:
        bus: the bus the topic lives on.
        topic: the snapshot topic.
        chunk_bytes: the most snapshot bytes one record carries.
        read_timeout_seconds: how long a load may take to read the key's partition.
    """

    def __init__(
        self,
        bus: Bus,
        topic: str = SNAPSHOTS,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        read_timeout_seconds: float = 60.0,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, was {chunk_bytes}")
        self._bus = bus
        self._topic = topic
        self._chunk_bytes = chunk_bytes
        self._read_timeout = read_timeout_seconds
        self._producer: Producer | None = None
        self._latest: dict[str, tuple[int, int]] = {}  # key -> (generation, slot) of the newest

    @property
    def topic(self) -> str:
        """The snapshot topic."""
        return self._topic

    def spec(self) -> TopicSpec:
        """The snapshot topic as every service creates it (compacted)."""
        return TopicSpec(self._topic, SNAPSHOT_PARTITIONS, compacted=True)

    async def create_topic(self) -> None:
        """Create the snapshot topic if it does not exist; an existing one is used as it is."""
        try:
            await self._bus.partitions(self._topic)
        except UnknownTopicError:
            await self._bus.create_topics([self.spec()])

    async def load(self, key: str) -> bytes | None:
        """The newest complete snapshot of `key`, or None if none was ever completed.

        Raises:
            SnapshotError: a complete set of chunks whose digest does not match, a chunk
                without the store's headers, or a partition that cannot be read in time.
            BusError: the bus failed.
        """
        found = await self._scan(key)
        if found.data is not None:
            self._latest[key] = (found.generation, found.slot)
        return found.data

    async def save(self, key: str, data: bytes, *, producer: Producer | None = None) -> None:
        """Write `data` as the newest snapshot of `key`; return once the log has every chunk.

        With a transactional `producer` the chunks are part of the caller's transaction: the
        snapshot exists once it commits. An aborted one leaves nothing visible, so the slot
        chosen next may be the one that still holds the newest snapshot: that write is
        atomic too, and the snapshot it replaces stays whole until it commits.

        Raises:
            BusError: the bus failed; the previous snapshot of `key` is still intact.
        """
        latest = self._latest.get(key)
        if latest is None:
            found = await self._scan(key)
            latest = (found.generation, found.slot if found.data is not None else 1)
        generation, slot = latest[0] + 1, 1 - latest[1]
        writer = producer if producer is not None else await self._own_producer()
        partition = await self._partition_of(key)
        digest = hashlib.sha256(data).hexdigest()
        pieces = [
            data[start : start + self._chunk_bytes]
            for start in range(0, len(data), self._chunk_bytes)
        ] or [b""]
        for index, piece in enumerate(pieces):
            headers = (
                (GENERATION_HEADER, str(generation).encode()),
                (CHUNK_HEADER, f"{index}/{len(pieces)}".encode()),
                (DIGEST_HEADER, digest.encode()),
            )
            await writer.send(
                self._topic,
                piece,
                key=_chunk_key(key, slot, index),
                headers=headers,
                partition=partition,
            )
        self._latest[key] = (generation, slot)

    async def close(self) -> None:
        """Stop the store's own producer, if it started one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _own_producer(self) -> Producer:
        if self._producer is None:
            producer = self._bus.producer()
            await producer.start()
            self._producer = producer
        return self._producer

    async def _partition_of(self, key: str) -> int:
        _check_key(key)
        count = await self._bus.partitions(self._topic)
        return int(murmur2(key.encode()) & 0x7FFFFFFF) % count

    async def _scan(self, key: str) -> _Found:
        partition = TopicPartition(self._topic, await self._partition_of(key))
        consumer = self._bus.consumer(read_committed=True, auto_offset_reset="none")
        consumer.assign([partition])
        await consumer.start()
        try:
            records = await self._read_all(consumer, partition, (key + "#").encode())
        finally:
            await consumer.stop()
        return _newest(key, records)

    async def _read_all(
        self, consumer: Consumer, partition: TopicPartition, prefix: bytes
    ) -> dict[bytes, Record]:
        """The last record of each chunk key starting with `prefix`, up to the end offset."""
        start = (await consumer.beginning_offsets([partition]))[partition]
        end = (await consumer.end_offsets([partition]))[partition]
        consumer.seek(partition, start)
        latest: dict[bytes, Record] = {}
        try:
            async with asyncio.timeout(self._read_timeout):
                while await consumer.position(partition) < end:
                    for record in await consumer.getmany(timeout_ms=_POLL_MS):
                        if record.key is not None and record.key.startswith(prefix):
                            latest[record.key] = record
        except TimeoutError:
            raise SnapshotError(
                f"could not read {partition} up to offset {end} within {self._read_timeout} s"
            ) from None
        return latest


def _check_key(key: str) -> None:
    if not key or "#" in key:
        raise ValueError(f"a snapshot key must be non-empty and without '#', was {key!r}")


def _chunk_key(key: str, slot: int, index: int) -> bytes:
    return f"{key}#{slot}/{index}".encode()


def _newest(key: str, records: dict[bytes, Record]) -> _Found:
    chunks = {name: _parse_chunk(record) for name, record in records.items()}
    highest = max((chunk.generation for chunk in chunks.values()), default=0)
    complete = []
    for slot in _SLOTS:
        first = chunks.get(_chunk_key(key, slot, 0))
        if first is None:
            continue
        parts = [chunks.get(_chunk_key(key, slot, index)) for index in range(first.count)]
        if _same_snapshot(first, parts):
            complete.append((first.generation, slot, first.digest, parts))
    if not complete:
        return _Found(None, 0, highest)
    generation, slot, digest, parts = max(complete)
    data = b"".join(part.value for part in parts if part is not None)
    if hashlib.sha256(data).hexdigest() != digest:
        raise SnapshotError(
            f"snapshot {key!r} generation {generation} (slot {slot}) has all its "
            f"{len(parts)} chunks but their SHA-256 does not match: the topic is corrupt"
        )
    return _Found(data, slot, highest)


def _same_snapshot(first: _Chunk, parts: Iterable[_Chunk | None]) -> bool:
    """All chunks present and of one write (same generation, count and digest)."""
    return all(
        part is not None
        and (part.generation, part.count, part.digest)
        == (first.generation, first.count, first.digest)
        for part in parts
    )


def _parse_chunk(record: Record) -> _Chunk:
    headers = dict(record.headers)
    try:
        generation = int(headers[GENERATION_HEADER])
        index_text, count_text = headers[CHUNK_HEADER].decode().split("/")
        index, count = int(index_text), int(count_text)
        digest = headers[DIGEST_HEADER].decode()
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise SnapshotError(
            f"{record.topic}[{record.partition}]@{record.offset} (key {record.key!r}) is not a "
            f"snapshot chunk: headers {sorted(headers)} ({e!r})"
        ) from e
    if not 0 <= index < count or generation < 1:
        raise SnapshotError(
            f"{record.topic}[{record.partition}]@{record.offset}: chunk {index}/{count} of "
            f"generation {generation} is out of range"
        )
    return _Chunk(generation, index, count, digest, record.value)
