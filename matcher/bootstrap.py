"""The composition root: settings -> topics, snapshot store, log loop, gRPC server, health.

`build` wires a matcher on a bus the caller owns (a KafkaBus for `python -m matcher`, a
MemoryBus when the whole mesh runs in one process) and does no I/O; `MatcherService.start`
creates missing topics and listens (NOT_SERVING); `MatcherService.run` joins the group,
recovers, matches, and returns the exit status.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final, NoReturn

import structlog

from matcher.consumer import LoopConfig, OrderConsumer
from matcher.metrics import MatcherMetrics
from matcher.service import SERVICE_NAME, BookDirectory, MatcherServicer
from matcher.snapshot import BookSnapshots
from matcher.standby import StandbyTail, WarmPartition
from ordermesh import handover
from ordermesh.bus import topics
from ordermesh.bus.base import Bus, Producer, TopicPartition, TopicSpec, UnknownTopicError
from ordermesh.config import CommonSettings, SettingsError, check_names, check_ranges, setting
from ordermesh.grpcx.server import GrpcServer
from ordermesh.handover import Handover, OwnerRecord, Role, fenced_after_all
from ordermesh.markets import Market, MarketTable, load_markets
from ordermesh.runtime import Runner
from ordermesh.snapshots import SNAPSHOTS, BusSnapshotStore, SnapshotStore
from ordermesh.v1 import matcher_pb2_grpc

log = structlog.get_logger(__name__)

_CREATE_ATTEMPTS: Final = 5
_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True, slots=True)
class MatcherSettings(CommonSettings):
    """Everything `python -m matcher` can be told (flags, then ORDERMESH_* variables)."""

    host: str = setting("127.0.0.1", "address the gRPC and metrics servers listen on")
    port: int = setting(50053, "gRPC port; 0 picks a free one")
    metrics_port: int = setting(9103, "Prometheus /metrics port on the same host; 0 turns it off")
    kafka: str = setting("", "Kafka bootstrap servers, host:port[,host:port]; required")
    group_id: str = setting(
        "ordermesh-matcher", "consumer group of the matchers; each symbol has one owner in it"
    )
    transactional_id_prefix: str = setting(
        "ordermesh", "transactional ids are <prefix>-matcher-orders-<partition>; unique per mesh"
    )
    topic_prefix: str = setting("", "put in front of every topic name (meshes sharing a cluster)")
    snapshot_every: int = setting(10_000, "snapshot a book after this many of its commands")
    max_batch: int = setting(500, "the most records read, matched and committed in one batch")
    partitions: int = setting(4, "partitions of each topic, when the matcher has to create it")
    grace_seconds: float = setting(10.0, "how long calls in flight may finish on shutdown")
    probe_seconds: float = setting(2.0, "how often the bus is probed; unanswered: NOT_SERVING")
    kafka_session_timeout_ms: int = setting(
        10_000, "a matcher silent this long loses its partitions (broker minimum: 6000)"
    )
    kafka_heartbeat_ms: int = setting(500, "how often a matcher heartbeats to its group")
    role: str = setting(
        "active",
        "active: join the group and match at once; standby: keep warm books and wait for "
        "ordermesh.v1.Admin/Promote (an owner record from a past hand-over overrides both)",
    )
    instance: str = setting("", "the name recorded as owner on promotion; the host name if empty")
    standby_max_lag: int = setting(1_000, "a standby this many records behind or less is ready")

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("snapshot_every", "max_batch", "partitions", "kafka_heartbeat_ms"),
            above_zero=("grace_seconds", "probe_seconds"),
            not_negative=(),
        )
        if self.kafka_session_timeout_ms <= self.kafka_heartbeat_ms:
            raise SettingsError(
                f"kafka_session_timeout_ms ({self.kafka_session_timeout_ms}) must exceed"
                f" kafka_heartbeat_ms ({self.kafka_heartbeat_ms})"
            )
        check_names(self)
        if self.role not in handover.ROLES:
            raise SettingsError(
                f"role must be one of {', '.join(handover.ROLES)}, was {self.role!r}"
            )
        if self.standby_max_lag < 0:
            raise SettingsError(f"standby_max_lag must be 0 or more, was {self.standby_max_lag}")
        for name in ("group_id", "transactional_id_prefix"):
            if _ID.fullmatch(getattr(self, name)) is None:
                raise SettingsError(
                    f"{name} must be 1 to 200 of A-Z a-z 0-9 . _ -, was {getattr(self, name)!r}"
                )

    def loop_config(self) -> LoopConfig:
        """The log loop's topics, group, transactional ids and bounds."""
        return LoopConfig(
            orders_topic=self.topic_prefix + topics.ORDERS,
            engine_topic=self.topic_prefix + topics.ENGINE,
            group_id=self.group_id,
            transactional_id_prefix=self.transactional_id_prefix,
            snapshot_every=self.snapshot_every,
            max_batch=self.max_batch,
        )

    @property
    def snapshot_topic(self) -> str:
        """The compacted snapshot topic, prefixed."""
        return self.topic_prefix + SNAPSHOTS


class MatcherService:
    """One matcher instance: log loop, books, gRPC server, metrics, health. Built by `build`."""

    def __init__(
        self,
        settings: MatcherSettings,
        bus: Bus,
        markets: MarketTable,
        *,
        store: SnapshotStore | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.loop_config()
        self.metrics = MatcherMetrics()
        self._bus = bus
        self._store = store or BusSnapshotStore(bus, settings.snapshot_topic)
        by_symbol: dict[str, Market] = {str(s): m for s, m in markets.markets.items()}
        self.directory = BookDirectory(by_symbol, self.config.orders_topic)
        self._book_snapshots = BookSnapshots(self._store, by_symbol, self.metrics)
        self.consumer = OrderConsumer(
            bus,
            self.config,
            markets=by_symbol,
            snapshots=self._book_snapshots,
            directory=self.directory,
            metrics=self.metrics,
            on_change=self._update_health,
        )
        self._by_symbol = by_symbol
        owner_id = f"{settings.transactional_id_prefix}-matcher-{settings.group_id}"
        self._owner = OwnerRecord(self._store, owner_id)
        self.handover = Handover(
            SERVICE_NAME,
            settings.instance or handover.default_instance(),
            settings.standby_max_lag,
            self._report_standby,
        )
        servicer = MatcherServicer(self.directory)
        self.server = GrpcServer(
            service_names=[SERVICE_NAME],
            registrars=[
                lambda s: matcher_pb2_grpc.add_MatcherServicer_to_server(servicer, s),
                handover.registrar(self.handover),
            ],
            host=settings.host,
            port=settings.port,
            grace_seconds=settings.grace_seconds,
        )
        self.metrics_port = 0
        """The metrics port bound by `start` (0: not served)."""
        self._bus_reachable = True
        self._serving = False
        self._serving_event = asyncio.Event()
        self._health_lock = asyncio.Lock()
        self._closed = False
        self._runner = Runner(self.server, self._close, shield=False)

    @property
    def port(self) -> int:
        """The gRPC port bound by `start`."""
        return self.server.bound_port

    @property
    def serving(self) -> bool:
        """Whether health says SERVING now."""
        return self._serving

    async def start(self) -> int:
        """Create missing topics, then serve metrics and gRPC (NOT_SERVING until recovered).

        Returns:
            The gRPC port bound.

        Raises:
            BusError: the bus is unreachable or refused the topics.
        """
        await self._ensure_topics()
        await self.consumer.prepare()
        if self.settings.metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        port = await self.server.start()
        log.info(
            "matcher started",
            port=port,
            metrics_port=self.metrics_port,
            group_id=self.config.group_id,
            orders_topic=self.config.orders_topic,
            engine_topic=self.config.engine_topic,
        )
        return port

    async def _ensure_topics(self) -> None:
        """Create each topic that is missing; use an existing one as it is.

        Instances starting together race to create the topics; the loser may find a topic
        that exists but is not visible to it yet, so that case is tried again a few times.
        """
        wanted = [
            TopicSpec(self.config.orders_topic, self.settings.partitions),
            TopicSpec(self.config.engine_topic, self.settings.partitions),
            TopicSpec(self.settings.snapshot_topic, 1, compacted=True),
        ]
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                missing = [spec for spec in wanted if not await self._exists(spec.name)]
                if missing:
                    await self._bus.create_topics(missing)
                    log.info("topics created", topics=[spec.name for spec in missing])
                return
            except UnknownTopicError:
                if attempt == _CREATE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.2 * attempt)

    async def _exists(self, topic: str) -> bool:
        try:
            await self._bus.partitions(topic)
        except UnknownTopicError:
            return False
        return True

    async def run(self) -> int:
        """Recover, match until stopped (status 0), a fail-stop (1) or a fence (EXIT_FENCED).

        Active with no owner record: join the group (each member owns a share). Standby:
        keep warm books until promoted, then own every partition by assignment; so does an
        instance the owner record names (the owner restarting).
        """
        status = await self._runner.run(
            {"orders": self._orders_loop(), "probe": self._probe_loop()}
        )
        return await fenced_after_all(status, self._owner, self.handover)

    async def _orders_loop(self) -> NoReturn:
        try:
            await self._orders()
        except BaseException as e:
            self.handover.stopped(repr(e))
            raise

    async def _orders(self) -> NoReturn:
        role, owner = await self.handover.start(self.settings.role, self._owner)
        if role is Role.ACTIVE and owner is None:
            await self.consumer.run()
        warm: dict[TopicPartition, WarmPartition] = {}
        if role is Role.STANDBY:
            tail = StandbyTail(
                self._bus,
                self.config.orders_topic,
                self.config.group_id,
                symbols_of=self.consumer.symbols_of,
                snapshots=self._book_snapshots,
                on_lag=self.handover.note_lag,
            )
            log.info("standing by", instance=self.handover.instance, owner=owner)
            warm = await tail.run(self.handover.requested)
            await self.handover.promoting()
            log.info("taking over", instance=self.handover.instance)
        await self.consumer.run_owner(warm, self._record_owner)

    async def _record_owner(self, producer: Producer) -> None:
        await self._owner.save(self.handover.instance, producer)
        log.info("owner recorded", key=self._owner.key, instance=self.handover.instance)

    async def _report_standby(self, name: str, serving: bool) -> None:
        if self.server.bound_port:
            await self.server.set_health(name, serving)

    async def stop(self) -> None:
        """Begin a graceful stop: `run` returns once the batch in progress has committed."""
        await self._runner.stop()

    async def wait_serving(self) -> None:
        """Return once health says SERVING (for tests and an all-in-one `ordermesh up`)."""
        await self._serving_event.wait()

    async def _probe_loop(self) -> NoReturn:
        while True:
            if self._serving:
                await self.consumer.heartbeat()  # a fenced instance stops here when idle
            reachable = await self.consumer.probe(within=max(self.settings.probe_seconds, 1.0))
            if reachable != self._bus_reachable:
                self._bus_reachable = reachable
                log.info("bus reachability changed", reachable=reachable)
                await self._update_health()
            await asyncio.sleep(self.settings.probe_seconds)

    async def _update_health(self) -> None:
        async with self._health_lock:
            serving = self.consumer.ready and self._bus_reachable and not self._closed
            if serving == self._serving or not self.server.bound_port:
                return
            self._serving = serving
            if serving:
                if self.handover.role is Role.PROMOTING:
                    await self.handover.activated()
                self._serving_event.set()
            else:
                self._serving_event.clear()
            await self.server.set_serving(serving)
            log.info("health", serving=serving, partitions=self.consumer.owned_partitions)

    async def _close(self) -> None:
        """Let the batch in progress commit, leave the group, release the clients."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.consumer.close()
        finally:
            if isinstance(self._store, BusSnapshotStore):
                await self._store.close()
            self.metrics.close()


def build(
    settings: MatcherSettings,
    bus: Bus,
    *,
    markets: MarketTable | None = None,
    store: SnapshotStore | None = None,
) -> MatcherService:
    """A matcher service on `bus` (not started; the caller owns and closes the bus).

    Args:
        settings: what to serve and how.
        bus: the log (KafkaBus, or a MemoryBus in one process).
        markets: the market table; loaded from settings.markets when None.
        store: where book snapshots live; the bus's snapshot topic when None.

    Raises:
        MarketConfigError: the markets file is missing or invalid.
    """
    table = markets if markets is not None else load_markets(settings.markets)
    return MatcherService(settings, bus, table, store=store)
