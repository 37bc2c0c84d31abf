"""Run a service until it is told to stop or something it cannot survive happens (fail-stop).

A service is a gRPC server plus background loops (consumers, snapshotters). `Supervisor`
starts the loops, waits for the first of: a stop signal, the server ending, or a loop
failing; then it stops the server gracefully and cancels the rest. A loop that fails is a
fail-stop: the process exits non-zero and the next start recovers from snapshot + log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from ordermesh.grpcx.server import GrpcServer

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1


class FatalError(Exception):
    """A state the process must not go on from; it stops and recovers on restart."""


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
                status = EXIT_FATAL
        if self.on_stop is not None:
            await self.on_stop()
        log.info("service stopped", exit_status=status)
        return status


_SERVER = "grpc-server"


def _outcome(task: asyncio.Task[None]) -> int:
    """EXIT_OK for the server ending or a cancel; EXIT_FATAL for any loop ending otherwise."""
    if task.cancelled():
        return EXIT_OK
    error = task.exception()
    if error is not None:
        log.error("fail-stop", loop=task.get_name(), error=repr(error), exc_info=error)
        return EXIT_FATAL
    if task.get_name() != _SERVER:
        log.error("background loop ended unexpectedly", loop=task.get_name())
        return EXIT_FATAL
    return EXIT_OK
