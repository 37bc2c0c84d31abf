"""The composition root: settings -> pool, migrations, batch consumer, gRPC server.

`build` wires a service on a bus the caller owns (a KafkaBus for `python -m settlement`, a
MemoryBus when the whole mesh runs in one process) and does no I/O; `start` connects to
PostgreSQL, applies the migrations, positions the consumer and listens; `run` commits
batches and serves until a stop (status 0) or a fail-stop (status 1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import structlog

from ordermesh.bus.base import Bus, TopicSpec
from ordermesh.config import CommonSettings, SettingsError, check_ranges, setting
from ordermesh.grpcx.server import GrpcServer
from ordermesh.markets import MarketTable, load_markets
from ordermesh.runtime import Runner
from ordermesh.v1 import settlement_pb2_grpc
from settlement.consumer import BatchConsumer, SettlementTopics
from settlement.metrics import SettlementMetrics
from settlement.queries import Queries
from settlement.service import SERVICE_NAME, SettlementServicer
from settlement.store import Store

log = structlog.get_logger(__name__)

_DATABASE_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class StartError(RuntimeError):
    """The service could not start: what failed, where, and why."""


def redacted(dsn: str) -> str:
    """`dsn` without its password, for logs and errors."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_CLOSE_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class SettlementSettings(CommonSettings):
    """Everything `python -m settlement` can be told (flags, then ORDERMESH_* variables)."""

    host: str = setting("127.0.0.1", "address the gRPC and metrics servers listen on")
    port: int = setting(50054, "gRPC port; 0 picks a free one")
    metrics_port: int = setting(9104, "Prometheus /metrics port on the same host; 0 turns it off")
    kafka: str = setting("", "Kafka bootstrap servers, host:port[,host:port]; required")
    postgres: str = setting(
        "", "PostgreSQL DSN, postgresql://user:pass@host:port/db; required (or DATABASE_URL)"
    )
    batch_max: int = setting(5_000, "the most log records one PostgreSQL transaction takes")
    batch_wait_ms: int = setting(20, "once a record is in, how long a batch may wait to fill")
    pool_size: int = setting(4, "PostgreSQL connections at most (the writer and the readers)")
    partitions: int = setting(4, "partitions of each topic, when settlement has to create it")
    topic_prefix: str = setting("", "put in front of every topic name (meshes sharing a cluster)")
    grace_seconds: float = setting(10.0, "how long calls in flight may finish on shutdown")

    def __post_init__(self) -> None:
        check_ranges(
            self,
            at_least_one=("batch_max", "partitions"),
            not_negative=("batch_wait_ms", "grace_seconds"),
        )
        if self.pool_size < 2:
            raise SettingsError(
                f"pool_size must be at least 2 (one writer, one reader), was {self.pool_size}"
            )
        if not self.host:
            raise SettingsError("host must not be empty")
        try:
            self.topics()
        except ValueError as e:
            raise SettingsError(str(e)) from e

    def topics(self) -> SettlementTopics:
        """The topic names, prefixed."""
        return SettlementTopics.with_prefix(self.topic_prefix)


class SettlementService:
    """The batch writer and the read side of one settlement process. Built by `build`."""

    def __init__(
        self,
        settings: SettlementSettings,
        bus: Bus,
        markets: MarketTable,
        pool: Any,
        *,
        clock: Callable[[], int],
        dsn: str = "",
    ) -> None:
        self.settings = settings
        self._dsn = dsn
        self.topics = settings.topics()
        self.metrics = SettlementMetrics()
        self._bus = bus
        self._pool = pool
        self.store = Store(pool)
        self.queries = Queries(pool)
        self.consumer = BatchConsumer(
            bus,
            self.topics,
            self.store,
            markets,
            self.metrics,
            batch_max=settings.batch_max,
            batch_wait_ms=settings.batch_wait_ms,
        )
        servicer = SettlementServicer(self.queries, markets, clock)
        self.server = GrpcServer(
            service_names=[SERVICE_NAME],
            registrars=[
                lambda s: settlement_pb2_grpc.add_SettlementServicer_to_server(servicer, s)
            ],
            host=settings.host,
            port=settings.port,
            grace_seconds=settings.grace_seconds,
        )
        self.metrics_port = 0
        """The metrics port bound by `start` (0: not served)."""
        self._pool_open = False
        self._closed = False
        self._runner = Runner(self.server, self._close, shield=False)

    @property
    def port(self) -> int:
        """The gRPC port bound by `start`."""
        return self.server.bound_port

    async def start(self) -> int:
        """Connect, migrate, position the consumer, serve metrics and gRPC (SERVING).

        Returns:
            The gRPC port bound.

        Raises:
            StartError: PostgreSQL cannot be reached or refused the migrations.
            MigrationError: the schema and the migration files disagree.
            BusError: the bus is unreachable or refused the topics.
        """
        try:
            await self._pool
            self._pool_open = True
            applied = await self.store.migrate()
        except _DATABASE_ERRORS as e:
            raise StartError(f"PostgreSQL at {redacted(self._dsn)}: {e}") from e
        log.info("schema ready", migrations_applied=applied)
        names = [self.topics.orders, self.topics.engine, self.topics.ledger]
        await self._bus.create_topics([TopicSpec(n, self.settings.partitions) for n in names])
        await self.consumer.start()
        if self.settings.metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        port = await self.server.start()
        await self.server.set_serving(True)
        log.info("settlement started", port=port, metrics_port=self.metrics_port)
        return port

    async def run(self) -> int:
        """Commit batches and serve until stopped (status 0) or a fail-stop (status 1)."""
        return await self._runner.run({"batches": self.consumer.run()})

    async def stop(self) -> None:
        """Begin a graceful stop: `run` returns once the loop is cancelled and all is closed."""
        await self._runner.stop()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.consumer.close()
        finally:
            self.metrics.close()
            if self._pool_open:
                try:
                    await asyncio.wait_for(self._pool.close(), _CLOSE_SECONDS)
                except TimeoutError:
                    self._pool.terminate()


async def build(
    settings: SettlementSettings,
    bus: Bus,
    dsn: str,
    *,
    markets: MarketTable | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> SettlementService:
    """A settlement service on `bus` and the PostgreSQL of `dsn` (not started).

    The caller owns and closes the bus; the service owns its connection pool.

    Args:
        settings: what to serve and how.
        bus: the log (KafkaBus, or a MemoryBus in one process).
        dsn: the PostgreSQL database, e.g. postgresql://user:pass@host:5432/settlement.
        markets: the market table; loaded from settings.markets when None.
        clock: Unix nanoseconds now (the ticker's window ends there).

    Raises:
        MarketConfigError: the markets file is missing or invalid.
    """
    table = markets if markets is not None else load_markets(settings.markets)
    # Not awaited: the pool connects in start().
    pool = asyncpg.create_pool(dsn, min_size=1, max_size=settings.pool_size)
    return SettlementService(settings, bus, table, pool, clock=clock, dsn=dsn)
