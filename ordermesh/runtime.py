"""Run a service until it is told to stop or something it cannot survive happens (fail-stop).

A service is a gRPC server plus background loops (consumers, snapshotters). `Supervisor`
starts the loops, waits for the first of: a stop signal, the server ending, or a loop
failing; then it stops the server gracefully and cancels the rest. A loop that fails is a
fail-stop: the process exits non-zero and the next start recovers from snapshot + log.
`Runner` gives a service its `run` and `stop`; `service_main` and `run_service` are the
shared body of each `python -m <service>`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import structlog

from ordermesh.bus.base import Bus
from ordermesh.config import SettingsError, load_settings, unknown_environment
from ordermesh.grpcx.server import GrpcServer
from ordermesh.telemetry import configure_logging

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_FENCED = 3
"""Another instance took this one's transactional id over (a hand-over): it stopped serving."""


class FatalError(Exception):
    """A state the process must not go on from; it stops and recovers on restart."""


class FencedError(FatalError):
    """A newer instance fenced this one's producer: it owns the state now; this one stops."""


@dataclass
class Supervisor:
    """Owns a service's server and loops for the life of the process."""

    server: GrpcServer
    """Started by the caller; stopped here."""
    on_stop: Callable[[], Awaitable[None]] | None = None
    """Closes what the loops used (producers, consumers, pools), after they are cancelled."""
    _loops: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def spawn(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        """Run `loop` in the background; its failure stops the whole service."""
        self._loops.append(asyncio.create_task(loop, name=name))

    async def run(self) -> int:
        """Wait for a stop or a failure; return the process exit status."""
        serving = asyncio.create_task(self.server.wait_for_termination(), name=_SERVER)
        done, pending = await asyncio.wait(
            {serving, *self._loops}, return_when=asyncio.FIRST_COMPLETED
        )
        status = max(_outcome(task) for task in done)
        await self.server.stop()
        rest = list(pending)
        for task in rest:
            task.cancel()
        results = await asyncio.gather(*rest, return_exceptions=True)
        for task, result in zip(rest, results, strict=True):
            if isinstance(result, Exception):
                log.error("loop failed while stopping", loop=task.get_name(), error=repr(result))
                status = max(status, _status_of(result))
        if self.on_stop is not None:
            await self.on_stop()
        log.info("service stopped", exit_status=status)
        return status


_SERVER = "grpc-server"


def _status_of(error: BaseException) -> int:
    """EXIT_FENCED for a fenced instance, EXIT_FATAL for any other failure."""
    return EXIT_FENCED if isinstance(error, FencedError) else EXIT_FATAL


def _outcome(task: asyncio.Task[None]) -> int:
    """EXIT_OK for the server ending or a cancel; else EXIT_FATAL (EXIT_FENCED when fenced)."""
    if task.cancelled():
        return EXIT_OK
    error = task.exception()
    if error is not None:
        log.error("fail-stop", loop=task.get_name(), error=repr(error), exc_info=error)
        return _status_of(error)
    if task.get_name() != _SERVER:
        log.error("background loop ended unexpectedly", loop=task.get_name())
        return EXIT_FATAL
    return EXIT_OK


@dataclass
class Runner:
    """Runs a service's server and loops under a `Supervisor`, and begins its graceful stop."""

    server: GrpcServer
    """Started by the service; stopped here."""
    close: Callable[[], Awaitable[None]]
    """Releases what the service holds; once, after its loops are cancelled."""
    shield: bool = True
    """Whether a cancel from outside (e.g. an in-process mesh) first stops the server gracefully."""
    running: bool = field(default=False, init=False)
    """Whether `run` is in progress."""

    async def run(self, loops: Mapping[str, Coroutine[Any, Any, None]]) -> int:
        """Run `loops` (by name) until a stop or a failure; return the process exit status."""
        self.running = True
        supervisor = Supervisor(self.server, on_stop=self.close)
        for name, loop in loops.items():
            supervisor.spawn(name, loop)
        supervised = asyncio.ensure_future(supervisor.run()) if self.shield else None
        try:
            if supervised is None:
                return await supervisor.run()
            return await asyncio.shield(supervised)
        except asyncio.CancelledError:
            if supervised is not None:
                # Cancelled from outside (e.g. the task of an in-process mesh): stop gracefully.
                await self.server.stop()
                await asyncio.gather(supervised, return_exceptions=True)
            raise
        except Exception as e:
            log.exception("shutdown failed", error=repr(e))
            return EXIT_FATAL
        finally:
            self.running = False

    async def stop(self) -> None:
        """Stop the server gracefully; close at once when `run` is not there to do it."""
        await self.server.stop()
        if not self.running:
            await self.close()


class Service(Protocol):
    """What `run_service` starts and runs: a built service and its gRPC server."""

    @property
    def server(self) -> GrpcServer:
        """The service's gRPC server."""

    async def start(self) -> int:
        """Connect and listen; return the gRPC port bound."""

    async def run(self) -> int:
        """Serve until a stop or a fail-stop; return the exit status."""

    async def stop(self) -> None:
        """Begin a graceful stop."""


class _ServiceSettings(Protocol):
    @property
    def kafka(self) -> str: ...
    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> str: ...


_Settings = TypeVar("_Settings", bound=_ServiceSettings)

KAFKA_REQUIRED: Final = (
    "Kafka is required: give its bootstrap servers with --kafka or ORDERMESH_KAFKA, "
    "e.g. --kafka 127.0.0.1:9092"
)


def _no_check(_settings: object) -> None:
    return None


def service_main(
    parser: argparse.ArgumentParser,
    settings_type: type[_Settings],
    serve: Callable[[_Settings], Coroutine[Any, Any, int]],
    argv: Sequence[str] | None,
    *,
    service: str,
    check: Callable[[_Settings], object] = _no_check,
) -> int:
    """Parse the settings, configure logging, run `serve`; return the exit status.

    A setting that does not parse, a missing Kafka address, or `check` raising
    `SettingsError` ends the process through `parser.error` (usage, status 2).

    Args:
        parser: the service's flags.
        settings_type: the service's settings class.
        serve: runs the service on the settings; returns the exit status.
        argv: the arguments; sys.argv when None.
        service: the service's name in the logs.
        check: further checks of the settings, before logging is configured.
    """
    try:
        settings = load_settings(settings_type, parser.parse_args(argv))
        if not settings.kafka:
            raise SettingsError(KAFKA_REQUIRED)
        check(settings)
        configure_logging(settings.log_level, settings.log_format, service=service)
    except (SettingsError, ValueError) as e:
        parser.error(str(e))
    for warning in unknown_environment([settings_type]):
        log.warning(warning)
    return asyncio.run(serve(settings))


async def run_service(
    service: Service,
    bus: Bus,
    *,
    kafka: str,
    start_errors: tuple[type[Exception], ...],
) -> int:
    """Start `service`, run it until a signal or a fail-stop, then close `bus`.

    Returns:
        The exit status: the run's, or EXIT_FATAL when the start fails with `start_errors`.
    """
    try:
        await service.start()
    except start_errors as e:
        log.error("cannot start", error=str(e), kafka=kafka)
        await service.stop()
        await bus.close()
        return EXIT_FATAL
    service.server.install_signal_handlers()
    try:
        return await service.run()
    finally:
        await bus.close()
