"""The bus interface every service codes against; Kafka's semantics, whatever is behind it.

Offsets follow Kafka: per partition, increasing, not necessarily contiguous (transaction
markers take offsets too). A committed offset is the *next* offset to read. Consumers never
start at "latest": a state-bearing consumer resumes from a committed or snapshotted offset,
or from the beginning (DESIGN §11).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Headers = tuple[tuple[str, bytes], ...]
OffsetReset = Literal["earliest", "none"]


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record as read from (or acknowledged by) the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0

    @property
    def topic_partition(self) -> TopicPartition:
        """Where the record lives."""
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create."""

    name: str
    partitions: int
    compacted: bool = False
    """Keep only the last record per key (snapshot topics)."""


class BusError(Exception):
    """Something the bus could not do; the message says what and where."""


class ProducerFencedError(BusError):
    """A newer producer with the same transactional id took over; this one must stop."""


class ProduceOutcomeUnknownError(BusError):
    """The bus cannot tell whether a record reached the log: the caller must fail-stop."""


class UnknownTopicError(BusError):
    """The topic does not exist (topics are created explicitly, never on first use)."""


class NoCommittedOffsetError(BusError):
    """auto_offset_reset="none" and the group has no committed offset for a partition."""


class RebalanceListener(Protocol):
    """Told when group membership moves partitions to or away from a consumer."""

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Called before partitions are taken away: finish and commit their work."""

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Called after partitions are given: restore their state and seek."""


class Producer(Protocol):
    """Writes records; acks=all and idempotent; transactional when given a transactional id."""

    async def start(self) -> None:
        """Connect (and, when transactional, fence every older producer with the same id)."""

    async def stop(self) -> None:
        """Flush and disconnect."""

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Record:
        """Append a record and wait until the log has it; the partition is chosen by key.

        Raises:
            ProduceOutcomeUnknownError: the write may or may not be in the log.
            ProducerFencedError: a newer producer took over this transactional id.
        """

    async def begin_transaction(self) -> None:
        """Start a transaction: what is sent until commit is invisible to read_committed."""

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        """Commit consumer offsets as part of the open transaction (once per transaction)."""

    async def commit_transaction(self) -> None:
        """Make the transaction's records and offsets visible, atomically."""

    async def abort_transaction(self) -> None:
        """Discard the transaction's records and offsets."""


def appends_at_once(producer: Producer) -> bool:
    """Whether `producer.send` appends and returns without waiting for anything (in-process).

    Sends to such a producer gain nothing from overlapping: one after the other they append
    in the same order, with the same records, without a task each. A producer says so with a
    class attribute `APPENDS_AT_ONCE = True`; any other (Kafka's, a wrapper) is awaited as
    one that waits for acknowledgements.
    """
    return getattr(producer, "APPENDS_AT_ONCE", False) is True


class Consumer(Protocol):
    """Reads records, by group subscription or by assigned partitions."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Leave the group (triggering a rebalance for the others) and disconnect."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        """Join the consumer group for `topics`; partitions come and go by rebalance."""

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions, with no group management."""

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` on."""

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer will read from `partition`."""

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> list[Record]:
        """Records from the assigned partitions, in offset order within each partition.

        Waits up to `timeout_ms` for at least one record; returns [] on time out.
        """

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Store the group's offsets (the next offset to read); the current positions if None."""

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset for `partition`, or None."""

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still in each partition."""

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record of each partition will get (read_committed: the LSO)."""


class Bus(Protocol):
    """A log: topics of partitions, producers and consumers."""

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        """A producer, transactional when `transactional_id` is given (not started)."""

    def consumer(
        self,
        *,
        group_id: str | None = None,
        read_committed: bool = True,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> Consumer:
        """A consumer (not started); `group_id` for subscriptions and committed offsets."""

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet; an existing one must have the same partitions."""

    async def partitions(self, topic: str) -> int:
        """How many partitions `topic` has; UnknownTopicError if it does not exist."""

    async def close(self) -> None:
        """Release what the bus holds (admin connections); producers and consumers stop first."""
