"""`ordermesh up`: the whole mesh in one process on localhost, with nothing to set up.

One event loop runs ubscore, the matcher, settlement and the gateway, on the in-memory bus
(its journal in DATA_DIR/log keeps the log across restarts) and an embedded PostgreSQL
(DATA_DIR/postgres), or on the Kafka and PostgreSQL given. Start order: PostgreSQL, bus,
ubscore + matcher + settlement (each SERVING), gateway. Stop order is the reverse: the
gateway drains first, the bus flushes its journal, PostgreSQL stops last. A lock file in
the data directory keeps a second `ordermesh up` off it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

import structlog

from gateway.bootstrap import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, GatewaySettings
from gateway.bootstrap import build as build_gateway
from matcher.bootstrap import MatcherSettings
from matcher.bootstrap import build as build_matcher
from ordermesh.bus.base import Bus, BusError
from ordermesh.bus.journal import FSYNC_POLICIES, JournalError, lock_exclusively
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from ordermesh.config import CommonSettings, SettingsError, check_ranges, setting
from ordermesh.embedded_support import (
    ApiKey,
    CombinedMetrics,
    EmbeddedPostgres,
    StartFailure,
    api_keys,
    start_failure,
)
from ordermesh.runtime import EXIT_FATAL, EXIT_OK, FatalError
from settlement.bootstrap import SettlementSettings, redacted
from settlement.bootstrap import build as build_settlement
from ubscore.bootstrap import UBSCoreSettings
from ubscore.bootstrap import build as build_ubscore

log = structlog.get_logger(__name__)

LOCK_FILE: Final = "ordermesh.lock"
SERVING_SECONDS: Final = 600.0
"""How long a service may take to recover (snapshot + replay) before `up` gives up."""
STOP_SECONDS: Final = 60.0
DEFAULT_DATA_DIR: Final = Path(".ordermesh")
DEFAULT_GATEWAY_PORT: Final = 50051


@dataclass(frozen=True, slots=True)
class UpSettings(CommonSettings):
    """Everything `ordermesh up` can be told (flags, then ORDERMESH_* variables)."""

    log_level: str = setting("warning", "the services' log level (debug, info, warning, error)")
    log_format: str = setting("console", "console (for people) or json (one object per line)")
    data_dir: Path = setting(DEFAULT_DATA_DIR, "where the log, database and API keys live")
    kafka: str = setting("", "Kafka bootstrap servers host:port; empty: the in-memory bus")
    topic_prefix: str = setting("", "put in front of every topic name (meshes sharing a cluster)")
    postgres: str = setting("", "PostgreSQL DSN; empty: an embedded PostgreSQL in the data dir")
    host: str = setting("127.0.0.1", "loopback address every server listens on")
    gateway_port: int = setting(DEFAULT_GATEWAY_PORT, "the gateway's gRPC port (what clients call)")
    ubscore_port: int = setting(50052, "ubscore's gRPC port")
    matcher_port: int = setting(50053, "the matcher's gRPC port")
    settlement_port: int = setting(50054, "settlement's gRPC port")
    metrics_port: int = setting(9100, "one Prometheus /metrics for the process; 0 turns it off")
    fsync: str = setting("batch", "when the bus journal is forced to disk: always, batch, never")
    rate_per_second: float = setting(
        DEFAULT_RATE_PER_SECOND, "gateway calls per second each account may make on average"
    )
    burst: int = setting(DEFAULT_BURST, "gateway calls an account may make at once")

    def __post_init__(self) -> None:
        try:
            loopback = self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SettingsError(
                f"host must be a loopback address (127.0.0.1, ::1), was {self.host!r}: `up` is"
                " local by design; to serve other machines run each service with python -m"
            )
        ports = [self.gateway_port, self.ubscore_port, self.matcher_port, self.settlement_port]
        for port in [*ports, self.metrics_port]:
            if not 0 <= port <= 65_535:
                raise SettingsError(f"ports must be 0..65535, was {port}")
        if self.fsync not in FSYNC_POLICIES:
            raise SettingsError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        check_ranges(
            self,
            ports=(),
            not_negative=(),
            above_zero=("rate_per_second",),
            at_least_one=("burst",),
        )


class _Service(Protocol):
    async def start(self) -> int: ...
    async def run(self) -> int: ...
    async def stop(self) -> None: ...


class _Stopped(Exception):
    """Ctrl-C or SIGTERM came while starting."""


class Progress:
    """Lines for the person who ran `ordermesh up` (stdout, flushed at once)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, line: str) -> None:
        """Print one line."""
        print(line, file=self._out, flush=True)


class Mesh:
    """The four services and what they stand on; `run` starts, serves and stops them."""

    def __init__(self, settings: UpSettings, stack: contextlib.AsyncExitStack, say: Progress):
        self.settings = settings
        self.status = EXIT_OK
        self._stack = stack
        self._say = say
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[int]] = {}
        self._services: dict[str, Any] = {}

    async def run(self) -> None:
        """Start everything, serve until a signal or a failure; the stack stops it all."""
        self._install_signal_handlers()
        dsn = await self._postgres()
        bus = await self._bus()
        await self._core_services(bus, dsn)
        keys_path = self.settings.data_dir.resolve() / "api_keys.toml"
        keys = api_keys(keys_path)
        self._say("starting the gateway")
        await self._gateway(bus, keys_path)
        metrics_port = self._metrics()
        self._banner(dsn, keys, metrics_port)
        await self._until_stopped()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        self._stack.callback(_remove_signal_handlers, loop)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    async def _postgres(self) -> str:
        if self.settings.postgres:
            self._say(f"using PostgreSQL at {redacted(self.settings.postgres)}")
            return self.settings.postgres
        directory = self.settings.data_dir.resolve() / "postgres"
        first = not (directory / "PG_VERSION").exists()
        self._say(
            f"starting PostgreSQL in {directory}"
            + (" (first run: initialising, a few seconds)" if first else "")
        )
        postgres = EmbeddedPostgres(directory)
        dsn = await postgres.start()
        self._stack.push_async_callback(self._stop_postgres, postgres)
        self._check_stop()
        return dsn

    async def _stop_postgres(self, postgres: EmbeddedPostgres) -> None:
        self._say("stopping PostgreSQL")
        await postgres.stop()

    async def _bus(self) -> Bus:
        bus: Bus
        if self.settings.kafka:
            self._say(f"using Kafka at {self.settings.kafka}")
            bus = KafkaBus(self.settings.kafka, client_id="ordermesh-up")
        else:
            journal = self.settings.data_dir.resolve() / "log"
            self._say(f"opening the log in {journal}")
            bus = await asyncio.to_thread(
                MemoryBus,
                data_dir=journal,
                fsync=self.settings.fsync,  # type: ignore[arg-type]  # checked by UpSettings
            )
        self._stack.push_async_callback(self._close_bus, bus)
        self._check_stop()
        return bus

    async def _close_bus(self, bus: Bus) -> None:
        self._say("closing the log" if not self.settings.kafka else "closing the Kafka clients")
        await bus.close()

    async def _core_services(self, bus: Bus, dsn: str) -> None:
        common: dict[str, Any] = {
            "markets": self.settings.markets,
            "log_level": self.settings.log_level,
            "log_format": self.settings.log_format,
            "host": self.settings.host,
            "metrics_port": 0,
            "kafka": self.settings.kafka,
            "topic_prefix": self.settings.topic_prefix,
        }
        s = self.settings
        ubscore = build_ubscore(UBSCoreSettings(**common, port=s.ubscore_port), bus)
        matcher = build_matcher(MatcherSettings(**common, port=s.matcher_port), bus)
        settlement_settings = SettlementSettings(**common, port=s.settlement_port, postgres=dsn)
        settlement = await build_settlement(settlement_settings, bus, dsn)
        self._stack.push_async_callback(self._stop_services, ["ubscore", "matcher", "settlement"])
        for name, service in (
            ("ubscore", ubscore),
            ("matcher", matcher),
            ("settlement", settlement),
        ):
            await self._start(name, service)
        self._say("ubscore recovering (snapshot + log), the matcher loading its books")
        await self._serving("ubscore", ubscore.wait_serving())
        await self._serving("matcher", matcher.wait_serving())

    async def _start(self, name: str, service: _Service) -> None:
        self._services[name] = service
        try:
            await service.start()
        except Exception as e:
            port = getattr(self.settings, f"{name}_port")
            raise start_failure(name, e, f"{name}-port", port) from e
        self._tasks[name] = asyncio.create_task(service.run(), name=name)
        self._check_stop()

    async def _serving(self, name: str, serving: Awaitable[None]) -> None:
        """Wait until `name` is SERVING; a failed run, a signal or the deadline end it."""
        waiter = asyncio.ensure_future(serving)
        stopper = asyncio.ensure_future(self._stop.wait())
        watched = {waiter, stopper, *self._tasks.values()}
        try:
            done, _ = await asyncio.wait(
                watched, timeout=SERVING_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()
        if waiter in done:
            waiter.result()  # a failed recovery raises here
            return
        for failed, task in self._tasks.items():
            if task in done:
                raise StartFailure(f"{failed} stopped while starting: {_ending(task)}")
        if stopper in done:
            raise _Stopped
        raise StartFailure(f"{name} not serving after {SERVING_SECONDS:.0f} s")

    async def _gateway(self, bus: Bus, keys: Path) -> None:
        """The gateway, on the three services' real ports; started once they serve."""
        s = self.settings
        host = f"[{s.host}]" if ":" in s.host else s.host
        address = {name: f"{host}:{self._services[name].port}" for name in self._services}
        settings = GatewaySettings(
            markets=s.markets,
            log_level=s.log_level,
            log_format=s.log_format,
            host=s.host,
            port=s.gateway_port,
            metrics_port=0,
            kafka=s.kafka,
            topic_prefix=s.topic_prefix,
            api_keys=str(keys),
            ubscore=address["ubscore"],
            matcher=address["matcher"],
            settlement=address["settlement"],
            rate_per_second=s.rate_per_second,
            burst=s.burst,
        )
        try:
            gateway = build_gateway(settings, bus)
        except (SettingsError, ValueError) as e:
            raise StartFailure(f"gateway cannot start: {e}") from e
        self._stack.push_async_callback(self._stop_services, ["gateway"])
        await self._start("gateway", gateway)
        await self._serving("gateway", gateway.wait_serving())

    def _metrics(self) -> int:
        if not self.settings.metrics_port:
            return 0
        registries = [service.metrics.registry for service in self._services.values()]
        metrics = CombinedMetrics(registries)
        try:
            port = metrics.serve(self.settings.host, self.settings.metrics_port)
        except OSError as e:
            raise StartFailure(
                f"metrics cannot listen on {self.settings.host}:{self.settings.metrics_port}:"
                f" {e}; choose another with --metrics-port, or 0 for none"
            ) from e
        self._stack.callback(metrics.close)
        return port

    async def _until_stopped(self) -> None:
        stopper = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait(
            {stopper, *self._tasks.values()}, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        if stopper in done:
            self._say("stopping (Ctrl-C again does nothing more: shutdown is on its way)")
            return
        for name, task in self._tasks.items():
            if task in done:
                self._say(f"error: {name} stopped: {_ending(task)}; stopping the rest")
                self.status = EXIT_FATAL

    async def _stop_services(self, names: list[str]) -> None:
        """Stop the named services together, then wait for their runs to end."""
        present = [name for name in names if name in self._services]
        if present:
            self._say(f"stopping {', '.join(present)}")
        await asyncio.gather(*(self._services[name].stop() for name in present))
        tasks = [self._tasks[name] for name in present if name in self._tasks]
        done, pending = await asyncio.wait(tasks, timeout=STOP_SECONDS) if tasks else (set(), set())
        for task in pending:
            self._say(f"error: {task.get_name()} did not stop within {STOP_SECONDS:.0f} s")
            task.cancel()
            self.status = EXIT_FATAL
        for task in done:
            if task.cancelled() or task.exception() is not None or task.result() != EXIT_OK:
                self.status = EXIT_FATAL

    def _banner(self, dsn: str, keys: list[ApiKey], metrics_port: int) -> None:
        for line in banner_lines(self.settings, self._ports(), dsn, keys, metrics_port):
            self._say(line)

    def _ports(self) -> dict[str, int]:
        return {name: service.port for name, service in self._services.items()}


def _ending(task: asyncio.Task[int]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is not None:
        return repr(error)
    return f"exit status {task.result()}"


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)


def banner_lines(
    settings: UpSettings, ports: dict[str, int], dsn: str, keys: list[ApiKey], metrics_port: int
) -> Iterator[str]:
    """Endpoints, where data lives, keys, a first step; last, the line "ordermesh is up"."""
    data_dir = settings.data_dir.resolve()
    for name in ("gateway", "ubscore", "matcher", "settlement"):
        where = f"{settings.host}:{ports[name]}" if name in ports else "not in this build yet"
        yield f"  {name:<11} {where}"
    if metrics_port:
        yield f"  {'metrics':<11} http://{settings.host}:{metrics_port}/metrics"
    bus = (
        f"Kafka at {settings.kafka}" if settings.kafka else f"in memory, journal in {data_dir}/log"
    )
    yield f"  {'log':<11} {bus}"
    yield f"  {'database':<11} {redacted(dsn)}"
    yield from key_lines(settings, keys, ports.get("gateway"))
    yield f"ordermesh is up (data in {data_dir}; Ctrl-C stops it, the next start resumes)"


def key_lines(settings: UpSettings, keys: list[ApiKey], gateway_port: int | None) -> Iterator[str]:
    """The API keys, and how to put money in a demo account (none is funded by default)."""
    keys_file = settings.data_dir.resolve() / "api_keys.toml"
    yield f"API keys (in {keys_file}):"
    for key in keys:
        account = f"account {key.account_id}" if key.account_id is not None else "any account"
        yield f"  {key.role:<7} {key.key}  ({key.name}, {account})"
    admin = next((key.name for key in keys if key.role == "admin"), None)
    if gateway_port is None or admin is None:
        return
    command = Path(sys.executable).parent / "ordermesh"
    options = [f"--key {admin}"]
    if settings.data_dir != DEFAULT_DATA_DIR:
        options.append(f"--data-dir {settings.data_dir}")
    if gateway_port != DEFAULT_GATEWAY_PORT or settings.host != "127.0.0.1":
        options.append(f"--target {settings.host}:{gateway_port}")
    yield "No account holds money until you deposit some, e.g. 10000 USDT to account 1:"
    yield (
        f"  {command if command.exists() else 'ordermesh'} {' '.join(options)}"
        " deposit 1 USDT 10000 --reference-id first-deposit"
    )


async def run_embedded(settings: UpSettings, out: TextIO = sys.stdout) -> int:
    """Run the mesh until Ctrl-C/SIGTERM (exit 0) or a failure (exit 1, with the reason)."""
    say = Progress(out)
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_exclusively(data_dir / LOCK_FILE, f"the data directory {data_dir.resolve()}")
    except (JournalError, OSError) as e:
        say(f"error: {e}. Stop the other `ordermesh up` first, or give another --data-dir.")
        return EXIT_FATAL
    mesh = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            mesh = Mesh(settings, stack, say)
            await mesh.run()
    except _Stopped:
        say("stopped while starting")
        return EXIT_OK
    except (StartFailure, BusError, FatalError) as e:
        say(f"error: {e}")
        return EXIT_FATAL
    finally:
        os.close(lock)
    status = EXIT_FATAL if mesh is None else mesh.status
    say("ordermesh stopped" if status == EXIT_OK else "ordermesh stopped after a failure")
    return status
