"""A standby matcher: warm books for every orders partition, kept just behind the owner.

The standby never joins the consumer group and produces nothing. It restores each symbol's
book from its snapshot and replays ordermesh.orders (read_committed) silently, but only below
the group's committed offset of each partition: a command the owner has not committed yet
may still get its events from the new owner, so applying it silently here would lose them.
Records read past the committed offset are held until the owner commits them.

On promotion the warm books are handed to the take-over (`OrderConsumer.run_owner`), which
fences the owner, reads the final committed offset and replays silently only the commands
between the warm position and it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from matcher.core import OrderBook
from matcher.snapshot import BookSnapshots, replay_from
from ordermesh.bus.base import Bus, BusError, Consumer, Record, TopicPartition
from ordermesh.codec import CodecError, decode_command
from ordermesh.runtime import FatalError

log = structlog.get_logger(__name__)

_POLL_MS: Final = 200
_PROBE_SECONDS: Final = 0.5
"""How often the committed offsets and the lag are read."""
_OFFSET_VISIBLE_SECONDS: Final = 5.0
"""How long a snapshot's committed offset may take to become visible after the snapshot."""
_MAX_HELD: Final = 20_000
"""Records held past a partition's committed offset before they are dropped and re-read."""


@dataclass(eq=False, slots=True)
class WarmPartition:
    """The books of one orders partition, with every command below `next_offset` applied."""

    partition: TopicPartition
    books: dict[str, OrderBook]
    next_offset: int


class StandbyTail:
    """Keeps warm books for every partition of the orders topic until promoted.

    Args:
        bus: the log.
        orders_topic: the input topic.
        group_id: the owner's consumer group (its committed offsets bound the replay).
        symbols_of: the symbols of each partition.
        snapshots: where books are restored from.
        on_lag: told the commands not yet applied (up to the log end), every half second.
    """

    def __init__(
        self,
        bus: Bus,
        orders_topic: str,
        group_id: str,
        *,
        symbols_of: Mapping[int, Sequence[str]],
        snapshots: BookSnapshots,
        on_lag: Callable[[int], Awaitable[None]],
    ) -> None:
        self._bus = bus
        self._topic = orders_topic
        self._group_id = group_id
        self._symbols_of = symbols_of
        self._snapshots = snapshots
        self._on_lag = on_lag

    async def run(self, until: asyncio.Event) -> dict[TopicPartition, WarmPartition]:
        """Restore, then apply committed commands until `until` is set; return the books.

        Raises:
            FatalError: a record that does not decode or names a symbol not of its partition,
                or snapshots and offsets that disagree.
            BusError: the bus failed.
        """
        count = await self._bus.partitions(self._topic)
        partitions = [TopicPartition(self._topic, p) for p in range(count)]
        consumer = self._bus.consumer(group_id=self._group_id, read_committed=True)
        consumer.assign(partitions)
        await consumer.start()
        try:
            warm = {tp: await self._restore(consumer, tp) for tp in partitions}
            await self._follow(consumer, warm, until)
        finally:
            await consumer.stop()
        return warm

    async def _restore(self, consumer: Consumer, tp: TopicPartition) -> WarmPartition:
        # Snapshots first, then the committed offset: the owner writes a snapshot and commits
        # the offset past it in one transaction, so once the snapshot is visible the offset
        # follows. Read the other way round, a transaction landing in between looks like
        # snapshots and offsets that disagree.
        restored = await self._snapshots.restore(self._symbols_of.get(tp.partition, ()))
        newest = max(
            (restored.books[symbol].last_offset for symbol in restored.from_snapshot), default=-1
        )
        committed = await consumer.committed(tp)
        deadline = time.monotonic() + _OFFSET_VISIBLE_SECONDS
        while newest >= 0 and (committed is None or committed <= newest):
            if time.monotonic() >= deadline:
                break  # replay_from names the disagreement
            await asyncio.sleep(_POLL_MS / 1000)
            committed = await consumer.committed(tp)
        beginning = (await consumer.beginning_offsets([tp]))[tp]
        start = replay_from(tp, restored, committed, beginning, self._group_id)
        consumer.seek(tp, start)
        log.info("standby restored", partition=tp.partition, replay_from=start)
        return WarmPartition(tp, restored.books, start)

    async def _follow(
        self, consumer: Consumer, warm: dict[TopicPartition, WarmPartition], until: asyncio.Event
    ) -> None:
        held: dict[TopicPartition, deque[Record]] = {tp: deque() for tp in warm}
        limits: dict[TopicPartition, int] = {}
        next_probe = 0.0
        while not until.is_set():
            for record in await consumer.getmany(timeout_ms=_POLL_MS):
                held[record.topic_partition].append(record)
            if time.monotonic() >= next_probe:
                limits = {tp: await consumer.committed(tp) or 0 for tp in warm}
                await self._report_lag(consumer, warm)
                next_probe = time.monotonic() + _PROBE_SECONDS
            for tp, queue in held.items():
                part = warm[tp]
                while queue and queue[0].offset < limits.get(tp, 0):
                    _apply(part, queue.popleft())
                if len(queue) > _MAX_HELD:  # the owner is stuck: read them again later
                    consumer.seek(tp, queue[0].offset)
                    queue.clear()

    async def _report_lag(
        self, consumer: Consumer, warm: Mapping[TopicPartition, WarmPartition]
    ) -> None:
        """Report the offsets between each partition's warm position and its end."""
        try:
            ends = await consumer.end_offsets(list(warm))
        except BusError as e:
            log.warning("standby lag probe failed", error=repr(e))
            return
        await self._on_lag(sum(max(ends[tp] - part.next_offset, 0) for tp, part in warm.items()))


def _apply(part: WarmPartition, record: Record) -> None:
    """Apply one committed command to its book silently (its events are in the log already)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    try:
        command = decode_command(record.value)
    except CodecError as e:
        raise FatalError(f"{where} is not an OrderCommand ({e}); the standby stops") from e
    book = part.books.get(command.symbol)
    if book is None:
        raise FatalError(f"{where}: a command for {command.symbol!r}, not of this partition")
    book.apply(command, record.offset)
    part.next_offset = record.offset + 1
