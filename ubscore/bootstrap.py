"""The composition root: settings -> bus topics, core, ack path, readers, gRPC server.

`build` wires a service on a bus the caller owns (a KafkaBus for `python -m ubscore`, a
MemoryBus when the whole mesh runs in one process) and does no I/O; `UBSCoreService.start`
connects and listens; `UBSCoreService.run` recovers, serves, and returns the exit status.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import structlog

from ordermesh import handover
from ordermesh.bus.base import (
    Bus,
    Producer,
    ProducerFencedError,
    TopicPartition,
    UnknownTopicError,
)
from ordermesh.config import CommonSettings, SettingsError, check_ranges, setting
from ordermesh.grpcx.server import GrpcServer
from ordermesh.handover import Handover, OwnerRecord, Role, fenced_after_all
from ordermesh.markets import MarketTable, load_markets
from ordermesh.runtime import FatalError, FencedError, Runner
from ordermesh.snapshots import BusSnapshotStore, SnapshotStore
from ordermesh.v1 import ubscore_pb2_grpc
from ubscore.consumer import LogReader
from ubscore.core import ENGINE_TOPIC, InvariantError, UBSCoreConfig
from ubscore.lifecycle import Lifecycle, LogTopics, Phase
from ubscore.metrics import UBSCoreMetrics
from ubscore.producer import CommitPolicy, LogWriter
from ubscore.service import SERVICE_NAME, UBSCoreServicer
from ubscore.snapshot import Snapshots, SnapshotSchedule

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class UBSCoreSettings(CommonSettings):
    """Everything `python -m ubscore` can be told (flags, then ORDERMESH_* variables)."""

    host: str = setting("127.0.0.1", "address the gRPC and metrics servers listen on")
    port: int = setting(50052, "gRPC port; 0 picks a free one")
    metrics_port: int = setting(9102, "Prometheus /metrics port on the same host; 0 turns it off")
    kafka: str = setting("", "Kafka bootstrap servers, host:port[,host:port]; required")
    shard_index: int = setting(
        0, "this instance's shard: it owns the accounts whose id mod shard_count is this"
    )
    shard_count: int = setting(1, "how many shards split the accounts")
    order_window: int = setting(1_000, "per account, recent client_order_ids kept for dedup")
    funding_window: int = setting(1_000, "per account, recent reference_ids kept for dedup")
    snapshot_every: int = setting(10_000, "take a snapshot after this many applied log records")
    partitions: int = setting(4, "partitions of each topic, when ubscore has to create it")
    topic_prefix: str = setting("", "put in front of every topic name (meshes sharing a cluster)")
    grace_seconds: float = setting(10.0, "how long calls in flight may finish on shutdown")
    role: str = setting(
        "active",
        "active: own the shard at once; standby: catch up from the log and wait for "
        "ordermesh.v1.Admin/Promote (an owner record from a past hand-over overrides both)",
    )
    instance: str = setting("", "the name recorded as owner on promotion; the host name if empty")
    standby_max_lag: int = setting(1_000, "a standby this many records behind or less is ready")
    commit_linger_ms: float = setting(
        0.0,
        "how long a transaction waits for more records; with 0, those that arrive while one "
        "commits form the next",
    )
    commit_max_records: int = setting(500, "the most records committed in one transaction")

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("snapshot_every", "partitions", "commit_max_records"),
            not_negative=("grace_seconds", "commit_linger_ms", "standby_max_lag"),
        )
        if not self.host:
            raise SettingsError("host must not be empty")
        if self.role not in handover.ROLES:
            raise SettingsError(
                f"role must be one of {', '.join(handover.ROLES)}, was {self.role!r}"
            )
        try:
            self.core_config()
        except ValueError as e:
            raise SettingsError(f"shard and window settings: {e}") from e
        try:
            self.topics()
        except ValueError as e:
            raise SettingsError(str(e)) from e

    def core_config(self) -> UBSCoreConfig:
        """The core's shard and window sizes."""
        return UBSCoreConfig(
            shard_index=self.shard_index,
            shard_count=self.shard_count,
            order_window=self.order_window,
            funding_window=self.funding_window,
        )

    def topics(self) -> LogTopics:
        """The topic names, prefixed."""
        return LogTopics.with_prefix(self.topic_prefix)

    @property
    def transactional_id(self) -> str:
        """The shard's transactional id: the same for every instance, so a new owner fences."""
        return f"{self.topic_prefix}ubscore-{self.shard_index}"

    def commit_policy(self) -> CommitPolicy:
        """The group commit's linger, bound and heartbeat group."""
        return CommitPolicy(
            linger_seconds=self.commit_linger_ms / 1000,
            max_records=self.commit_max_records,
            heartbeat_group=self.transactional_id,
        )


class UBSCoreService:
    """One ubscore shard: gRPC server, ack path, log readers, snapshots. Built by `build`."""

    def __init__(
        self,
        settings: UBSCoreSettings,
        bus: Bus,
        markets: MarketTable,
        *,
        store: SnapshotStore | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics()
        self.metrics = UBSCoreMetrics()
        self._bus = bus
        self._producer: Producer = bus.producer(transactional_id=settings.transactional_id)
        self._store = store or BusSnapshotStore(bus, self.topics.snapshots)
        self._owner = OwnerRecord(self._store, settings.transactional_id)
        self._engine_partitions: list[TopicPartition] = []
        self.lifecycle = Lifecycle(self._report_health)
        self.handover = Handover(
            SERVICE_NAME,
            settings.instance or handover.default_instance(),
            settings.standby_max_lag,
            self._report_standby,
        )
        self.schedule = SnapshotSchedule(settings.snapshot_every)
        self.writer = LogWriter(
            self._producer,
            self.topics,
            self.lifecycle,
            self.metrics,
            on_confirmed=self.schedule.note,
            clock=clock,
            policy=settings.commit_policy(),
            heartbeat_offsets=self._engine_offsets,
        )
        servicer = UBSCoreServicer(self.writer, self.metrics)
        self.server = GrpcServer(
            service_names=[SERVICE_NAME],
            registrars=[
                lambda s: ubscore_pb2_grpc.add_UBSCoreServicer_to_server(servicer, s),
                handover.registrar(self.handover),
            ],
            host=settings.host,
            port=settings.port,
            grace_seconds=settings.grace_seconds,
        )
        self.reader = LogReader(bus, self.topics, self.lifecycle, self.metrics, self.schedule.note)
        self.snapshots = Snapshots(
            self._store,
            None,  # the store's own idempotent producer: a snapshot is no part of a transaction
            markets,
            settings.core_config(),
            writer=self.writer,
            lifecycle=self.lifecycle,
            metrics=self.metrics,
            schedule=self.schedule,
        )
        self.metrics_port = 0
        """The metrics port bound by `start` (0: not served)."""
        self._closed = False
        self._runner = Runner(self.server, self._close)

    @property
    def port(self) -> int:
        """The gRPC port bound by `start`."""
        return self.server.bound_port

    async def start(self) -> int:
        """Create missing topics, start metrics and gRPC (NOT_SERVING).

        The transactional producer starts when this instance takes the shard over (`run`):
        starting it fences the previous owner, which a standby must not do.

        Returns:
            The gRPC port bound.

        Raises:
            BusError: the bus is unreachable or refused the topics.
        """
        await self._create_missing_topics()
        if isinstance(self._store, BusSnapshotStore):
            await self._store.create_topic()
        if self.settings.metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        port = await self.server.start()
        log.info(
            "ubscore started",
            port=port,
            metrics_port=self.metrics_port,
            topic_prefix=self.settings.topic_prefix,
        )
        return port

    async def _create_missing_topics(self) -> None:
        # --partitions applies to topics created here; existing ones are used as they are.
        missing = []
        for spec in self.topics.specs(self.settings.partitions):
            try:
                await self._bus.partitions(spec.name)
            except UnknownTopicError:
                missing.append(spec)
        if missing:
            await self._bus.create_topics(missing)
            log.info("created topics", topics=[spec.name for spec in missing])

    async def run(self) -> int:
        """Recover, then serve until stopped (status 0) or a fail-stop (status 1).

        The loops run under a `Supervisor`: the log loop (recovery, then the engine tail),
        the snapshot loop, and the fail-stop loop. On the way out a graceful stop saves a
        snapshot; a fail-stop never does.
        """
        status = await self._runner.run(
            {
                "log": self._log_loop(),
                "snapshots": self.snapshots.run(),
                "fail-stop": self._fail_stop(),
            }
        )
        return await fenced_after_all(status, self._owner, self.handover)

    async def stop(self) -> None:
        """Begin a graceful stop: `run` then returns once the snapshot is saved."""
        await self._runner.stop()

    async def wait_serving(self) -> None:
        """Return once recovery is done and the service is live (for tests and `up`).

        Raises:
            FatalError: recovery failed; `run` returns EXIT_FATAL.
        """
        await self.lifecycle.wait_live()

    async def _report_health(self, serving: bool) -> None:
        # The server is built after the lifecycle, which reports through it; before it
        # starts there is nothing to report to (it starts NOT_SERVING).
        if self.server.bound_port:
            await self.server.set_serving(serving)

    async def _report_standby(self, name: str, serving: bool) -> None:
        if self.server.bound_port:
            await self.server.set_health(name, serving)

    async def _fail_stop(self) -> NoReturn:
        try:
            await self.lifecycle.fail_stop()
        finally:
            self.handover.stopped(self.lifecycle.failure or "stopped")

    def _engine_offsets(self) -> dict[TopicPartition, int]:
        """The engine offsets applied (the heartbeat transaction commits them)."""
        core = self.writer.core
        return {tp: core.next_offset(ENGINE_TOPIC, tp.partition) for tp in self._engine_partitions}

    async def _log_loop(self) -> NoReturn:
        try:
            await self._recover_and_follow()
        except Exception as e:
            self.lifecycle.fail(f"the log loop failed: {e}", e)
            raise

    async def _recover_and_follow(self) -> NoReturn:
        """Restore; as a standby, tail the log until promoted; then take over and serve."""
        started = time.perf_counter()
        role, owner = await self.handover.start(self.settings.role, self._owner)
        core = await self.snapshots.restore()
        if role is Role.STANDBY:
            await self.reader.replay(core)
            self.lifecycle.stand_by()
            log.info("standing by", instance=self.handover.instance, owner=owner)
            await self.reader.tail(core, self.handover.requested, self.handover.note_lag)
            await self.handover.promoting()
            log.info("taking over", instance=self.handover.instance)
            started = time.perf_counter()
        await self._take_over(record_owner=role is Role.STANDBY or owner is not None)
        report = await self.reader.replay(core)
        try:
            core.finish_replay()
        except InvariantError as e:
            raise FatalError(f"the replayed state is inconsistent: {e}") from e
        # The state is now mostly long-lived: keep the collector from walking it again.
        gc.collect()
        gc.freeze()
        self.writer.attach(core)
        self.writer.start()
        seconds = time.perf_counter() - started
        self.metrics.replayed_records.set(report.records)
        self.metrics.replay_seconds.set(seconds)
        log.info("recovered", records=report.records, seconds=round(seconds, 3))
        await self.lifecycle.go_live()
        await self.handover.activated()
        log.info("serving", port=self.port)
        await self.reader.follow(core)

    async def _take_over(self, *, record_owner: bool) -> None:
        """Start the transactional producer (fencing the old owner), and record the owner.

        Once the producer has started, the old owner's open transaction is aborted, so the
        replay that follows reads every record it ever committed, and no more will come.

        Raises:
            FencedError: yet another instance took the shard over meanwhile.
        """
        engine = self.topics.engine
        count = await self._bus.partitions(engine)
        self._engine_partitions = [TopicPartition(engine, p) for p in range(count)]
        await self._producer.start()
        if record_owner:
            try:
                await self._owner.save(self.handover.instance, self._producer)
            except ProducerFencedError as e:
                self.lifecycle.fence("fenced while taking over: another instance was faster", e)
                raise FencedError(f"fenced while taking the shard over: {e}") from e
            log.info("owner recorded", key=self._owner.key, instance=self.handover.instance)

    async def _close(self) -> None:
        """Settle produces, save a last snapshot when healthy, release the clients."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.writer.wait_idle(), self.settings.grace_seconds + 30)
            if self.lifecycle.phase is Phase.LIVE:
                await self.snapshots.take("shutdown")
        finally:
            await self.writer.close()
            await self.reader.close()
            await self._producer.stop()
            if isinstance(self._store, BusSnapshotStore):
                await self._store.close()
            self.metrics.close()


def build(
    settings: UBSCoreSettings,
    bus: Bus,
    *,
    markets: MarketTable | None = None,
    store: SnapshotStore | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> UBSCoreService:
    """A ubscore service on `bus` (not started; the caller owns and closes the bus).

    Args:
        settings: what to serve and how.
        bus: the log (KafkaBus, or a MemoryBus in one process).
        markets: the market table; loaded from settings.markets when None.
        store: where snapshots live; the bus's snapshot topic when None.
        clock: Unix nanoseconds stamped on commands and ledger events.

    Raises:
        MarketConfigError: the markets file is missing or invalid.
    """
    table = markets if markets is not None else load_markets(settings.markets)
    return UBSCoreService(settings, bus, table, store=store, clock=clock)
