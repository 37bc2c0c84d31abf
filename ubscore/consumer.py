"""Reading the log: the replay at start-up, then the live tail of ordermesh.engine.

Every record is decoded strictly and applied with its partition and offset, so a record the
core already applied is skipped and nothing is applied twice. A record that does not decode,
or that the core cannot take, stops the service (fail-stop): it is never skipped (DESIGN §11).
Neither reader ever starts at "latest": each partition is read from the core's next offset,
which is 0 for a core with no snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

import structlog

from ordermesh.bus.base import Bus, BusError, Consumer, Record, TopicPartition
from ordermesh.codec import CodecError, decode_command, decode_engine_event, decode_ledger_event
from ordermesh.runtime import FatalError
from ubscore.core import ENGINE_TOPIC, ORDERS_TOPIC, InvariantError, UBSCore
from ubscore.lifecycle import Lifecycle, LogTopics
from ubscore.metrics import UBSCoreMetrics

log = structlog.get_logger(__name__)

BATCH_RECORDS: Final = 5_000
"""The most records one getmany returns."""
POLL_MS: Final = 200
"""How long one getmany waits for records."""
PROBE_SECONDS: Final = 2.0
"""How often the live tail asks the bus for its end offsets (lag, and health)."""
PROBE_TIMEOUT_SECONDS: Final = 5.0
"""A probe not answered in this time marks the bus unreachable (health NOT_SERVING)."""


def apply_record(core: UBSCore, topics: LogTopics, record: Record) -> None:
    """Decode one record of the three log topics and apply it to the core.

    Raises:
        FatalError: the record does not decode, or the core refuses it (a broken invariant).
    """
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        topic = topics.logical(record.topic)
        if topic == ENGINE_TOPIC:
            event = decode_engine_event(record.value)
            core.apply_engine(event, record.partition, record.offset)
        elif topic == ORDERS_TOPIC:
            command = decode_command(record.value)
            core.apply_command(command, record.partition, record.offset)
        else:
            ledger = decode_ledger_event(record.value)
            core.apply_ledger(ledger, record.partition, record.offset)
    except CodecError as e:
        raise FatalError(f"{where} does not decode; stopping rather than skipping it: {e}") from e
    except (InvariantError, ValueError) as e:
        raise FatalError(f"{where} cannot be applied: {e}") from e


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did."""

    records: int
    """Records applied."""
    seconds: float
    """How long it took."""


class LogReader:
    """Replays ordermesh.orders, .ledger and .engine into a core, then tails .engine.

    Args:
        bus: the bus the topics are on.
        topics: their names.
        lifecycle: health follows the bus probes; a failure here is a fail-stop.
        metrics: engine events applied, consumer lag.
        on_applied: told how many records each batch applied (the snapshot schedule).
    """

    def __init__(
        self,
        bus: Bus,
        topics: LogTopics,
        lifecycle: Lifecycle,
        metrics: UBSCoreMetrics,
        on_applied: Callable[[int], None],
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._on_applied = on_applied
        self._consumer: Consumer | None = None

    async def replay(self, core: UBSCore) -> ReplayReport:
        """Apply every record after the core's offsets, up to each partition's end offset.

        The end offsets are taken when the replay starts (read_committed: the last stable
        offset). Partitions are read interleaved, which the core allows.

        Raises:
            FatalError: the log and the core's offsets disagree, or a record cannot be applied.
            BusError: the bus failed.
        """
        started = time.perf_counter()
        names = (self._topics.orders, self._topics.ledger, self._topics.engine)
        consumer = await self._open(core, names)
        try:
            partitions = sorted(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            _check_offsets(core, self._topics, await consumer.beginning_offsets(partitions), ends)
            records = await self._read_until(consumer, core, ends)
        finally:
            await self._close()
        return ReplayReport(records, time.perf_counter() - started)

    async def _read_until(
        self, consumer: Consumer, core: UBSCore, ends: dict[TopicPartition, int]
    ) -> int:
        remaining = {
            partition: end
            for partition, end in ends.items()
            if _next(core, self._topics, partition) < end
        }
        applied = 0
        while remaining:
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_RECORDS)
            for record in batch:
                apply_record(core, self._topics, record)
            applied += len(batch)
            self._on_applied(len(batch))
            for partition in list(remaining):
                if await consumer.position(partition) >= remaining[partition]:
                    del remaining[partition]
        return applied

    async def tail(
        self,
        core: UBSCore,
        until: asyncio.Event,
        on_lag: Callable[[int], Awaitable[None]],
    ) -> None:
        """As a standby: apply the three topics as they come (read_committed) until `until` is set.

        Produces nothing. Every few seconds it measures how far behind each partition's end
        (the last stable offset) it is and reports the sum to `on_lag`.

        Raises:
            FatalError: a record cannot be applied, or the bus failed while reading.
        """
        names = (self._topics.orders, self._topics.ledger, self._topics.engine)
        consumer = await self._open(core, names)
        try:
            partitions = sorted(consumer.assignment())
            next_probe = 0.0
            while not until.is_set():
                await self._apply_batch(consumer, core, "tailing the log")
                if time.monotonic() >= next_probe:
                    await on_lag(await self._lag(consumer, partitions))
                    next_probe = time.monotonic() + PROBE_SECONDS / 4
        finally:
            await self._close()

    async def _lag(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> int:
        """Records between each partition's position and its end (the last stable offset)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                ends = await consumer.end_offsets(partitions)
                positions = [await consumer.position(tp) for tp in partitions]
        except (TimeoutError, BusError) as e:
            log.warning("standby lag probe failed", error=repr(e))
            return 2**62  # unknown: not caught up
        return sum(
            max(ends[tp] - position, 0) for tp, position in zip(partitions, positions, strict=True)
        )

    async def follow(self, core: UBSCore) -> NoReturn:
        """Apply ordermesh.engine as it comes, forever; probe the bus every few seconds.

        Raises:
            FatalError: a record cannot be applied, or the bus failed while reading.
        """
        consumer = await self._open(core, (self._topics.engine,))
        partitions = sorted(consumer.assignment())
        next_probe = 0.0
        while True:
            applied = await self._apply_batch(consumer, core, f"reading {self._topics.engine}")
            if applied:
                self._metrics.engine_events.inc(applied)
            if time.monotonic() >= next_probe:
                await self._probe(consumer, core, partitions)
                next_probe = time.monotonic() + PROBE_SECONDS

    async def _probe(
        self, consumer: Consumer, core: UBSCore, partitions: Sequence[TopicPartition]
    ) -> None:
        """Ask the bus for the engine's end offsets: the lag, and whether the bus answers."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                ends = await consumer.end_offsets(partitions)
        except (TimeoutError, BusError) as e:
            log.warning("bus probe failed", topic=self._topics.engine, error=repr(e))
            await self._lifecycle.set_reachable(False)
            return
        lag = sum(max(end - _next(core, self._topics, tp), 0) for tp, end in ends.items())
        self._metrics.consumer_lag.set(lag)
        await self._lifecycle.set_reachable(True)

    async def _apply_batch(self, consumer: Consumer, core: UBSCore, doing: str) -> int:
        """Read what `consumer` has (waiting up to POLL_MS), apply it; how many records.

        Raises:
            FatalError: the bus failed while `doing`, or a record cannot be applied.
        """
        try:
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_RECORDS)
        except BusError as e:
            raise FatalError(f"{doing} failed: {e}") from e
        for record in batch:
            apply_record(core, self._topics, record)
        if batch:
            self._on_applied(len(batch))
        return len(batch)

    async def _open(self, core: UBSCore, names: Sequence[str]) -> Consumer:
        """A started consumer on every partition of `names`, each at the core's next offset."""
        partitions = []
        for name in names:
            count = await self._bus.partitions(name)
            partitions += [TopicPartition(name, index) for index in range(count)]
        _check_known(core, self._topics, partitions)
        # "none": a position outside the log is an error, never a silent jump to its start.
        consumer = self._bus.consumer(read_committed=True, auto_offset_reset="none")
        consumer.assign(partitions)
        await consumer.start()
        self._consumer = consumer
        for partition in partitions:
            consumer.seek(partition, _next(core, self._topics, partition))
        return consumer

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def close(self) -> None:
        """Stop the consumer in use, if any."""
        await self._close()


def _next(core: UBSCore, topics: LogTopics, partition: TopicPartition) -> int:
    return core.next_offset(topics.logical(partition.topic), partition.partition)


def _check_known(core: UBSCore, topics: LogTopics, partitions: Sequence[TopicPartition]) -> None:
    """Refuse a core with offsets for partitions the topics do not have (fewer partitions)."""
    known = {(topics.logical(tp.topic), tp.partition) for tp in partitions}
    names = {topics.logical(tp.topic) for tp in partitions}
    unknown = sorted(key for key in core.offsets if key[0] in names and key not in known)
    if unknown:
        raise FatalError(
            f"the snapshot has offsets for partitions the topics do not have: {unknown}; "
            "the topics were recreated with fewer partitions"
        )


def _check_offsets(
    core: UBSCore,
    topics: LogTopics,
    beginnings: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> None:
    """Refuse to replay when the log no longer holds what the core needs, or holds less."""
    for partition, end in sorted(ends.items()):
        wanted = _next(core, topics, partition)
        if wanted > end:
            raise FatalError(
                f"{partition.topic}[{partition.partition}] ends at offset {end}, but the "
                f"snapshot has applied it up to {wanted - 1}: the topic was recreated or "
                "truncated; this snapshot does not belong to this log"
            )
        if wanted < beginnings[partition]:
            raise FatalError(
                f"{partition.topic}[{partition.partition}] now starts at offset "
                f"{beginnings[partition]}, but the replay needs it from {wanted}: retention "
                "deleted records the state depends on"
            )
