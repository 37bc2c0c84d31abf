"""ubscore's snapshots: restored at start-up, taken every N applied records and at shutdown.

A snapshot is the core's state plus the offsets it has applied (DESIGN §6); restoring one and
replaying each topic from those offsets gives the same state as replaying the whole log. It
is stored under "ubscore/<shard index>" in the snapshot store and restores only under the
same shard and window sizes: any other configuration is refused with the differences named.
"""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

import structlog

from ordermesh.bus.base import Producer
from ordermesh.codec import CodecError
from ordermesh.markets import MarketTable
from ordermesh.runtime import FatalError
from ordermesh.snapshots import SnapshotStore
from ubscore.codec import decode_snapshot, encode_snapshot
from ubscore.core import InvariantError, UBSCore, UBSCoreConfig, UBSCoreSnapshot
from ubscore.lifecycle import Lifecycle, Phase
from ubscore.metrics import UBSCoreMetrics
from ubscore.producer import LogWriter

log = structlog.get_logger(__name__)


def snapshot_key(config: UBSCoreConfig) -> str:
    """The store key of a shard's snapshots."""
    return f"ubscore/{config.shard_index}"


class SnapshotSchedule:
    """Counts applied records and says when the next snapshot is due.

    Args:
        every: records (commands, ledger events, engine events) between two snapshots.
    """

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"snapshot_every must be at least 1, was {every}")
        self._every = every
        self._since = 0
        self.due = asyncio.Event()
        """Set once `every` records were applied since the last snapshot."""

    def note(self, count: int) -> None:
        """Count `count` more applied records."""
        self._since += count
        if self._since >= self._every:
            self.due.set()

    def reset(self) -> None:
        """A snapshot was taken: count from zero."""
        self._since = 0
        self.due.clear()


class Snapshots:
    """Restores the core from the newest snapshot, and takes and saves new ones.

    Args:
        store: where snapshots live.
        producer: the producer the store writes with; None for the store's own.
        markets: the market table the core trades.
        config: this instance's shard and window sizes; a snapshot must match them.
        writer: the ack path, quiesced while a snapshot is taken.
        lifecycle: snapshots are taken only while live.
        metrics: snapshot counts and sizes, whether recovery restored one.
        schedule: when the next periodic snapshot is due.
    """

    def __init__(
        self,
        store: SnapshotStore,
        producer: Producer | None,
        markets: MarketTable,
        config: UBSCoreConfig,
        *,
        writer: LogWriter,
        lifecycle: Lifecycle,
        metrics: UBSCoreMetrics,
        schedule: SnapshotSchedule,
    ) -> None:
        self._store = store
        self._producer = producer
        self._markets = markets
        self._config = config
        self._key = snapshot_key(config)
        self._writer = writer
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._schedule = schedule

    async def restore(self) -> UBSCore:
        """A replaying core: the newest snapshot's state, or an empty one if there is none.

        Raises:
            FatalError: the snapshot does not decode, was taken under another configuration,
                or contradicts the market table.
        """
        started = time.perf_counter()
        data = await self._store.load(self._key)
        if data is None:
            log.info("no snapshot; replaying the log from its start", key=self._key)
            self._metrics.restored_from_snapshot.set(0)
            return UBSCore(self._markets, self._config)
        try:
            snapshot = await asyncio.to_thread(decode_snapshot, data)
        except CodecError as e:
            raise FatalError(f"snapshot {self._key!r} does not decode: {e}") from e
        self._check(snapshot)
        try:
            core = UBSCore.restore(snapshot, self._markets)
        except InvariantError as e:
            raise FatalError(f"snapshot {self._key!r} cannot be restored: {e}") from e
        log.info(
            "restored from snapshot",
            key=self._key,
            bytes=len(data),
            offsets={f"{o.topic}[{o.partition}]": o.offset for o in snapshot.offsets},
            seconds=round(time.perf_counter() - started, 3),
        )
        self._metrics.restored_from_snapshot.set(1)
        return core

    def _check(self, snapshot: UBSCoreSnapshot) -> None:
        theirs, ours = snapshot.config, self._config
        names = ("shard_index", "shard_count", "order_window", "funding_window")
        differences = [
            f"{name} {getattr(theirs, name)} (this instance: {getattr(ours, name)})"
            for name in names
            if getattr(theirs, name) != getattr(ours, name)
        ]
        if differences:
            raise FatalError(
                f"snapshot {self._key!r} was taken with {', '.join(differences)}; start with "
                "the settings it was taken with (resharding needs a migration, not a restart)"
            )

    async def run(self) -> NoReturn:
        """Take a snapshot each time one is due, while live.

        Raises:
            FatalError: saving failed (the bus is failing: fail-stop).
        """
        await self._lifecycle.wait_live()
        while True:
            await self._schedule.due.wait()
            if not await self.take("periodic"):
                # Not live any more (a fail-stop or a fence): the process is stopping. Without
                # the reset, a due snapshot would make this loop spin without ever yielding.
                self._schedule.reset()

    async def take(self, trigger: str) -> bool:
        """Snapshot the core between two requests and save it; False if not live.

        Raises:
            FatalError: saving failed.
        """
        async with self._writer.quiesced():
            if self._lifecycle.phase is not Phase.LIVE:
                return False
            started = time.perf_counter()
            snapshot = self._writer.core.snapshot()
            self._schedule.reset()
        data = await asyncio.to_thread(encode_snapshot, snapshot)
        try:
            await self._store.save(self._key, data, producer=self._producer)
        except Exception as e:
            raise self._fatal(f"saving snapshot {self._key!r} failed", e) from e
        self._metrics.snapshots.labels(trigger).inc()
        self._metrics.snapshot_bytes.set(len(data))
        log.info(
            "snapshot saved",
            key=self._key,
            trigger=trigger,
            bytes=len(data),
            seconds=round(time.perf_counter() - started, 3),
        )
        return True

    def _fatal(self, reason: str, error: Exception) -> FatalError:
        self._lifecycle.fail(reason, error)
        return FatalError(f"{reason}: {error}")
