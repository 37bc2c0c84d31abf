import asyncio

import pytest

from ordermesh.grpcx.server import GrpcServer
from ordermesh.runtime import EXIT_FATAL, EXIT_OK, FatalError, Supervisor


async def started_server() -> GrpcServer:
    server = GrpcServer(service_names=[], registrars=[], grace_seconds=1.0)
    await server.start()
    return server


class Closed:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


@pytest.mark.asyncio
async def test_a_failing_loop_stops_everything_with_a_fatal_status():
    server = await started_server()
    closed = Closed()
    supervisor = Supervisor(server, on_stop=closed)
    cancelled = asyncio.Event()

    async def healthy() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        raise FatalError("produce outcome unknown")

    supervisor.spawn("healthy", healthy())
    supervisor.spawn("failing", failing())
    assert await asyncio.wait_for(supervisor.run(), 10) == EXIT_FATAL
    assert cancelled.is_set()
    assert closed.calls == 1


@pytest.mark.asyncio
async def test_a_stop_cancels_the_loops_and_exits_cleanly():
    server = await started_server()
    supervisor = Supervisor(server)
    entered = asyncio.Event()

    async def idle() -> None:
        entered.set()
        await asyncio.Event().wait()

    supervisor.spawn("idle", idle())
    running = asyncio.ensure_future(supervisor.run())
    await asyncio.wait_for(entered.wait(), 5)
    await server.stop()
    assert await asyncio.wait_for(running, 10) == EXIT_OK


@pytest.mark.asyncio
async def test_a_loop_that_returns_is_treated_as_a_failure():
    server = await started_server()
    supervisor = Supervisor(server)

    async def finishes() -> None:
        return None

    supervisor.spawn("finishes", finishes())
    assert await asyncio.wait_for(supervisor.run(), 10) == EXIT_FATAL
