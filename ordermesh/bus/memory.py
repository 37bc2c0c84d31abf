"""The in-memory bus: Kafka's log semantics inside one process, for the embedded mesh.

One `MemoryBus` per process; its producers and consumers share it on one event loop.
Partitions are append-only lists; a key picks its partition exactly as Kafka's default
partitioner does. Transactions append their records at once but hide them from
read_committed consumers until the commit marker; markers take offsets, as on Kafka.
Consumer groups rebalance eagerly (every member gives up all its partitions, then gets its
new share) when a member joins or leaves. Retention is not modelled.

With a `data_dir`, every change is also appended to a journal there (`ordermesh.bus.journal`)
and the bus opens with the state the journal holds: the same records at the same offsets,
group offsets and producer epochs; transactions a crash left open are aborted, and
compacted topics keep only the newest record per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

from aiokafka.partitioner import murmur2

from ordermesh.bus.base import (
    BusError,
    Headers,
    NoCommittedOffsetError,
    OffsetReset,
    ProducerFencedError,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)
from ordermesh.bus.journal import (
    DEFAULT_FSYNC_INTERVAL_MS,
    FsyncPolicy,
    Journal,
    Recovered,
)
from ordermesh.bus.memory_groups import Group, Member


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=4096)
def _key_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash of a key: pure, and keys repeat (symbols, accounts)."""
    return int(murmur2(key) & 0x7FFFFFFF)


class _Signal:
    """Wakes every waiter at once; each waiter then re-checks its own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class _Outcome(Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(eq=False, slots=True)
class _Transaction:
    number: int
    outcome: _Outcome = _Outcome.OPEN
    partitions: list[_Partition] = field(default_factory=list)
    offsets: tuple[str, dict[TopicPartition, int]] | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    record: Record | None  # None: a transaction marker, or a record compacted away
    transaction: _Transaction | None

    def visible(self, read_committed: bool) -> bool:
        if self.record is None:
            return False
        if read_committed and self.transaction is not None:
            return self.transaction.outcome is _Outcome.COMMITTED
        return True


class _Partition:
    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.entries: list[_Entry] = []
        self.open: dict[_Transaction, int] = {}  # open transaction -> its first offset here

    @property
    def end(self) -> int:
        return len(self.entries)

    @property
    def stable_end(self) -> int:
        """Kafka's last stable offset: read_committed readers stop before an open transaction."""
        return min(self.open.values(), default=len(self.entries))

    def limit(self, read_committed: bool) -> int:
        return self.stable_end if read_committed else self.end


@dataclass(slots=True)
class _TransactionalId:
    epoch: int = -1
    open: _Transaction | None = None


class _Log:
    """The state every producer and consumer of one bus shares."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self.topics: dict[str, list[_Partition]] = {}
        self.groups: dict[str, Group] = {}
        self.transactional_ids: dict[str, _TransactionalId] = {}
        self.signal = _Signal()
        self.clock_ms = clock_ms
        self.journal: Journal | None = None
        self.next_transaction = 1

    def restore(self, recovered: Recovered) -> None:
        """Take the state a journal held (on an empty log)."""
        self.next_transaction = recovered.next_transaction
        for spec in recovered.topics.values():
            self.topics[spec.name] = [
                _Partition(TopicPartition(spec.name, i)) for i in range(spec.partitions)
            ]
        ended = {
            number: _Transaction(number, _Outcome.COMMITTED if committed else _Outcome.ABORTED)
            for number, committed in recovered.outcomes.items()
        }
        for tp, entries in recovered.partitions.items():
            self.partition(tp).entries = [
                _Entry(record, ended[number] if number else None) for record, number in entries
            ]
        for group_id, offsets in recovered.committed.items():
            self.group(group_id).committed.update(offsets)
        for transactional_id, epoch in recovered.epochs.items():
            self.transactional_ids[transactional_id] = _TransactionalId(epoch)

    def new_transaction(self) -> _Transaction:
        transaction = _Transaction(self.next_transaction)
        self.next_transaction += 1
        return transaction

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        if self.journal is not None:
            self.journal.commit_offsets(group_id, offsets)
        self.group(group_id).committed.update(offsets)

    def partitions_of(self, topic: str) -> list[_Partition]:
        try:
            return self.topics[topic]
        except KeyError:
            raise UnknownTopicError(f"topic {topic!r} does not exist") from None

    def partition(self, tp: TopicPartition) -> _Partition:
        partitions = self.partitions_of(tp.topic)
        if not 0 <= tp.partition < len(partitions):
            raise UnknownTopicError(
                f"topic {tp.topic!r} has {len(partitions)} partitions, asked for {tp.partition}"
            )
        return partitions[tp.partition]

    def group(self, group_id: str) -> Group:
        return self.groups.setdefault(group_id, Group(self))

    def end_transaction(self, transaction: _Transaction, *, commit: bool) -> None:
        """Write a marker in each partition written to; apply the offsets on commit."""
        if transaction.outcome is not _Outcome.OPEN:
            return
        if self.journal is not None:
            self.journal.end_transaction(
                transaction.number,
                commit=commit,
                markers=[(p.tp, p.end) for p in transaction.partitions],
                offsets=transaction.offsets,
            )
        transaction.outcome = _Outcome.COMMITTED if commit else _Outcome.ABORTED
        for partition in transaction.partitions:
            partition.entries.append(_Entry(None, transaction))
            del partition.open[transaction]
        if commit and transaction.offsets is not None:
            group_id, offsets = transaction.offsets
            self.group(group_id).committed.update(offsets)
        self.signal.notify()


class MemoryBus:
    """An in-process log with Kafka's semantics: partitions, offsets, groups, transactions.

    Args:
        clock_ms: Milliseconds since the epoch for record timestamps; the wall clock if None.
        data_dir: Keep a journal here and open with the state it holds; memory only if None.
        fsync: When the journal is forced to disk: every write ("always"), at most every
            `fsync_interval_ms` ("batch"), or never (the OS decides). Every write reaches
            the OS at once, so a process that dies loses nothing in any mode.
        fsync_interval_ms: The "batch" interval.

    Raises:
        JournalError: `data_dir` is in use by another bus, or its journal is corrupt.
    """

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] | None = None,
        data_dir: Path | None = None,
        fsync: FsyncPolicy = "batch",
        fsync_interval_ms: int = DEFAULT_FSYNC_INTERVAL_MS,
    ) -> None:
        self._log = _Log(clock_ms or _wall_clock_ms)
        if data_dir is not None:
            journal, recovered = Journal.open(
                data_dir, fsync=fsync, fsync_interval_ms=fsync_interval_ms
            )
            self._log.restore(recovered)
            self._log.journal = journal

    def producer(self, *, transactional_id: str | None = None) -> MemoryProducer:
        """A producer, transactional when `transactional_id` is given (not started)."""
        return MemoryProducer(self._log, transactional_id)

    def consumer(
        self,
        *,
        group_id: str | None = None,
        read_committed: bool = True,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> MemoryConsumer:
        """A consumer (not started); `group_id` for subscriptions and committed offsets."""
        return MemoryConsumer(self._log, group_id, read_committed, auto_offset_reset)

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet; an existing one must have the same partitions.

        Raises:
            BusError: A topic exists with another partition count, or a count is below 1.
        """
        for spec in specs:
            existing = self._log.topics.get(spec.name)
            if existing is not None and len(existing) != spec.partitions:
                raise BusError(
                    f"topic {spec.name!r} exists with {len(existing)} partitions,"
                    f" asked for {spec.partitions}"
                )
            if spec.partitions < 1:
                raise BusError(
                    f"topic {spec.name!r} needs at least 1 partition, was {spec.partitions}"
                )
            if existing is None:
                if self._log.journal is not None:
                    self._log.journal.create_topic(spec)
                self._log.topics[spec.name] = [
                    _Partition(TopicPartition(spec.name, i)) for i in range(spec.partitions)
                ]

    async def partitions(self, topic: str) -> int:
        """How many partitions `topic` has; UnknownTopicError if it does not exist."""
        return len(self._log.partitions_of(topic))

    async def close(self) -> None:
        """Close the journal, if any (flushed to disk); without one, nothing to release."""
        if self._log.journal is not None:
            self._log.journal.close()


class MemoryProducer:
    """Appends to a `MemoryBus`; transactional (and fencing) when given a transactional id."""

    APPENDS_AT_ONCE: ClassVar[bool] = True
    """`send` never waits: see `ordermesh.bus.base.appends_at_once`."""

    def __init__(self, log: _Log, transactional_id: str | None) -> None:
        self._log = log
        self._transactional_id = transactional_id
        self._epoch = -1
        self._started = False
        self._transaction: _Transaction | None = None
        self._offsets_sent = False
        self._next_unkeyed: dict[str, int] = {}

    async def start(self) -> None:
        """Start; with a transactional id, fence older producers and abort their transaction."""
        if self._transactional_id is not None:
            state = self._log.transactional_ids.setdefault(
                self._transactional_id, _TransactionalId()
            )
            if state.open is not None:
                self._log.end_transaction(state.open, commit=False)
                state.open = None
            if self._log.journal is not None:
                self._log.journal.fence(self._transactional_id, state.epoch + 1)
            state.epoch += 1
            self._epoch = state.epoch
        self._started = True

    async def stop(self) -> None:
        """Stop, aborting a transaction still open (unless a newer producer took over)."""
        if self._transaction is not None and not self._fenced():
            await self.abort_transaction()
        self._started = False

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Record:
        """Append a record; it is in the log when this returns.

        Raises:
            ProducerFencedError: A newer producer took over this transactional id.
            UnknownTopicError: No such topic or partition.
            BusError: Not started, or transactional and outside a transaction.
        """
        self._check()
        if self._transactional_id is not None and self._transaction is None:
            raise BusError(f"producer {self._transactional_id!r} sends outside a transaction")
        index = self._choose_partition(topic, key, partition)
        target = self._log.partition(TopicPartition(topic, index))
        record = Record(topic, index, target.end, key, value, tuple(headers), self._log.clock_ms())
        transaction = self._transaction
        if transaction is not None and transaction not in target.open:
            target.open[transaction] = record.offset
            transaction.partitions.append(target)
        if self._log.journal is not None:
            self._log.journal.append(record, 0 if transaction is None else transaction.number)
        target.entries.append(_Entry(record, transaction))
        self._log.signal.notify()
        return record

    def _choose_partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        count = len(self._log.partitions_of(topic))
        if partition is not None:
            return partition
        if key is not None:
            return _key_hash(key) % count
        # Kafka picks a random partition for a keyless record; round-robin is as valid.
        turn = self._next_unkeyed.get(topic, 0)
        self._next_unkeyed[topic] = turn + 1
        return turn % count

    async def begin_transaction(self) -> None:
        """Start a transaction: what is sent until commit is invisible to read_committed."""
        self._check()
        if self._transactional_id is None:
            raise BusError("begin_transaction needs a producer with a transactional id")
        if self._transaction is not None:
            raise BusError(f"producer {self._transactional_id!r} already has an open transaction")
        self._transaction = self._log.new_transaction()
        self._log.transactional_ids[self._transactional_id].open = self._transaction

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        """Commit `group_id`'s offsets with the open transaction (once per transaction)."""
        transaction = self._open_transaction()
        if transaction.offsets is not None:
            raise BusError("send_offsets_to_transaction may be called once per transaction")
        transaction.offsets = (group_id, dict(offsets))

    async def commit_transaction(self) -> None:
        """Make the transaction's records and offsets visible, atomically."""
        self._end(commit=True)

    async def abort_transaction(self) -> None:
        """Discard the transaction's records and offsets."""
        self._end(commit=False)

    def _end(self, *, commit: bool) -> None:
        transaction = self._open_transaction()
        self._log.end_transaction(transaction, commit=commit)
        self._transaction = None
        for state in self._log.transactional_ids.values():
            if state.open is transaction:
                state.open = None

    def _open_transaction(self) -> _Transaction:
        self._check()
        if self._transaction is None:
            raise BusError(f"producer {self._transactional_id!r} has no open transaction")
        return self._transaction

    def _fenced(self) -> bool:
        tid = self._transactional_id
        return tid is not None and self._log.transactional_ids[tid].epoch != self._epoch

    def _check(self) -> None:
        if not self._started:
            raise BusError("producer is not started")
        if self._fenced():
            raise ProducerFencedError(
                f"producer {self._transactional_id!r} (epoch {self._epoch}) was fenced"
                " by a newer producer with the same transactional id"
            )


class MemoryConsumer:
    """Reads a `MemoryBus` by group subscription or by assigned partitions."""

    def __init__(
        self, log: _Log, group_id: str | None, read_committed: bool, reset: OffsetReset
    ) -> None:
        self._log = log
        self._group_id = group_id
        self._read_committed = read_committed
        self._reset = reset
        self._member = Member()
        self._started = False
        self._joining: asyncio.Task[None] | None = None
        self._turn = 0

    async def start(self) -> None:
        """Start; a subscribed consumer joins its group and returns with its first share."""
        if self._started:
            raise BusError("consumer is already started")
        for tp in self._member.positions:
            self._log.partition(tp)
        self._started = True  # listeners may use the consumer while it joins
        try:
            if self._member.topics:
                await self._group().rebalance(joining=self._member)
        except BaseException:
            self._started = False
            raise

    async def stop(self) -> None:
        """Leave the group (the others rebalance, this one's partitions are revoked first)."""
        if not self._started:
            return
        joining, self._joining = self._joining, None
        if joining is not None:
            with contextlib.suppress(Exception):
                await joining
        if self._group_id is not None and self._member in self._group().members:
            await self._group().rebalance(leaving=self._member)
        self._started = False
        self._member.positions = {}
        self._log.signal.notify()
        self._raise_failure(stopping=True)

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        """Join the consumer group for `topics` (at start, or at once when started)."""
        if self._group_id is None:
            raise BusError("subscribe needs a consumer with a group_id")
        if self._member.positions and not self._member.topics:
            raise BusError("consumer has assigned partitions; it cannot also subscribe")
        if not topics:
            raise BusError("subscribe needs at least one topic")
        self._member.topics = tuple(topics)
        self._member.listener = listener
        if self._started:
            self._joining = asyncio.create_task(self._group().rebalance(joining=self._member))

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions from their committed offsets, with no group management."""
        if self._member.topics:
            raise BusError("consumer is subscribed; it cannot also assign partitions")
        self._member.positions = dict.fromkeys(partitions)
        self._log.signal.notify()

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now."""
        return frozenset(self._member.positions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` on."""
        self._assigned(partition)
        if offset < 0:
            raise BusError(f"seek offset must be >= 0, was {offset} for {partition}")
        self._member.positions[partition] = offset
        self._log.signal.notify()

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer will read from `partition`."""
        self._assigned(partition)
        return self._resolve(partition)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> list[Record]:
        """Records from the assigned partitions, in offset order within each partition.

        Waits up to `timeout_ms` for at least one record; returns [] on time out.

        Raises:
            NoCommittedOffsetError: auto_offset_reset="none" and nothing committed.
            UnknownTopicError: An assigned or subscribed topic does not exist.
            BusError: Not started, or a rebalance listener failed (the error is the cause).
        """
        if max_records is not None and max_records < 1:
            raise BusError(f"max_records must be >= 1, was {max_records}")
        if self._joining is not None and self._joining.done():
            joining, self._joining = self._joining, None
            joining.result()  # a join that failed raises here
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        while True:
            self._raise_failure()
            records = self._fetch(max_records)
            remaining = deadline - asyncio.get_running_loop().time()
            if records or remaining <= 0:
                return records
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._log.signal.wait()

    def _raise_failure(self, *, stopping: bool = False) -> None:
        if not self._started and not stopping:
            raise BusError("consumer is not started")
        failure, self._member.failure = self._member.failure, None
        if failure is not None:
            raise BusError(f"rebalance listener failed: {failure!r}") from failure

    def _fetch(self, max_records: int | None) -> list[Record]:
        records: list[Record] = []
        if not self._member.settled:
            return records
        partitions = sorted(self._member.positions)
        # Start at a different partition each call so a small max_records starves none.
        self._turn = (self._turn + 1) % max(len(partitions), 1)
        for tp in partitions[self._turn :] + partitions[: self._turn]:
            position = self._resolve(tp)
            log = self._log.partition(tp)
            limit = log.limit(self._read_committed)
            while position < limit and (max_records is None or len(records) < max_records):
                entry = log.entries[position]
                position += 1
                if entry.visible(self._read_committed) and entry.record is not None:
                    records.append(entry.record)
            self._member.positions[tp] = position
        return records

    def _resolve(self, tp: TopicPartition) -> int:
        """The position in `tp`, from the committed offset or the reset policy when unset."""
        end = self._log.partition(tp).end
        position = self._member.positions[tp]
        if position is not None and position > end:
            if self._reset == "none":
                raise BusError(f"offset {position} is out of range for {tp} (end {end})")
            position = 0
        if position is None:
            committed = self._group().committed.get(tp) if self._group_id is not None else None
            if committed is None and self._reset == "none":
                raise NoCommittedOffsetError(
                    f"group {self._group_id!r} has no committed offset for {tp}"
                    " and auto_offset_reset is 'none'"
                )
            position = 0 if committed is None else committed
        self._member.positions[tp] = position
        return position

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Store the group's offsets (the next offset to read); the current positions if None."""
        group_id = self._required_group_id()
        if offsets is None:
            offsets = {tp: p for tp, p in self._member.positions.items() if p is not None}
        for tp, offset in offsets.items():
            self._assigned(tp)
            if offset < 0:
                raise BusError(f"committed offset must be >= 0, was {offset} for {tp}")
        self._log.commit_offsets(group_id, offsets)

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset for `partition`, or None."""
        return self._group().committed.get(partition)

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still in each partition (always 0: nothing is deleted)."""
        for tp in partitions:
            self._log.partition(tp)
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record of each partition will get (read_committed: the LSO)."""
        return {tp: self._log.partition(tp).limit(self._read_committed) for tp in partitions}

    def _assigned(self, partition: TopicPartition) -> None:
        if not self._started:
            raise BusError("consumer is not started")
        if partition not in self._member.positions:
            raise BusError(f"partition {partition} is not assigned to this consumer")

    def _required_group_id(self) -> str:
        if self._group_id is None:
            raise BusError("committed offsets need a consumer with a group_id")
        return self._group_id

    def _group(self) -> Group:
        return self._log.group(self._required_group_id())
