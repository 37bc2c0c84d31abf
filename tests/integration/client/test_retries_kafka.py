"""A retry never doubles an order or a deposit: the gateway dies between request and answer.

The mesh runs on Kafka and PostgreSQL (`ordermesh up --kafka --postgres`), plus a second
gateway as its own process (`python -m gateway`) on the same log and services. The SDK
calls that gateway through a loopback TCP forwarder that passes requests on but can hold
back the gateway's answers. With the answer held, the order (or deposit) is seen to land
through the other gateway; then the second gateway is SIGKILLed, the SDK gets UNAVAILABLE
and retries with the same client_order_id (reference_id), a new gateway process comes up on
the same port, and the retry lands there: one order, frozen once, answered as a duplicate.

| test            | who   | what                                     | expected                    |
|-----------------|-------|------------------------------------------|-----------------------------|
| place retried   | 901   | BUY 1 BTC @ 100; answer held; SIGKILL    | one order, 100 USDT frozen  |
| deposit retried | admin | 5 USDT to 903; answer held; SIGKILL      | 5 USDT credited, duplicate  |
| rate limit      | 902   | more calls than the burst allows         | ResourceExhausted           |
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.client import AsyncClient, NotFound, Order, ResourceExhausted
from tests import waiting
from tests.e2e.mesh_process import clean_environment, free_ports, mesh_ports
from tests.e2e.test_up_external import ExternalUp
from tests.integration.client.mesh import ADMIN_KEY, trader_key, write_keys
from tests.servers.postgres import (
    create_database,
    drop_database,
    new_database_name,
    with_database,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

T = TypeVar("T")
D = Decimal
RATE_FLAGS = ("--rate-per-second=1", "--burst=3")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], what: str
) -> T:
    return await waiting.eventually(probe, accept, what=what, seconds=30, poll_seconds=0.1)


class Forwarder:
    """127.0.0.1:port -> the gateway; while `hold` is set, the gateway's bytes go nowhere."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.hold = False
        self.held = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _connection(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter):
        try:
            server, to_server = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:  # the gateway is down: so is this connection
            to_client.close()
            return
        await asyncio.gather(
            self._pipe(client, to_server, holdable=False),
            self._pipe(server, to_client, holdable=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, holdable: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if holdable and self.hold:
                    self.held += len(data)
                    continue
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


@dataclass
class SecondGateway:
    """`python -m gateway` on a fixed port, beside the mesh's own gateway."""

    argv: list[str]
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None
    starts: list[float] = field(default_factory=list)

    async def start(self) -> None:
        started = asyncio.get_running_loop().time()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=log, stderr=log, env=clean_environment()
            )
        await eventually(self._serving, bool, f"the second gateway serving ({self.log})")
        self.starts.append(asyncio.get_running_loop().time() - started)

    async def _serving(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            pytest.fail(f"the second gateway ended: {self.log.read_text()[-2000:]}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            except grpc.RpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()  # SIGKILL: no goodbye on the open connections
            await self.process.wait()


@dataclass
class Mesh:
    up: ExternalUp
    gateway: SecondGateway
    forwarder: Forwarder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, postgres_dsn: str
) -> AsyncIterator[Mesh]:
    root = tmp_path_factory.mktemp("sdk-kafka")
    database = new_database_name()
    await create_database(postgres_dsn, database)
    data = root / "data"
    data.mkdir()
    write_keys(data / "api_keys.toml", accounts=range(901, 904))
    ports = mesh_ports()
    up = ExternalUp(data, ports, kafka_bootstrap, with_database(postgres_dsn, database))
    (port,) = free_ports(1)
    gateway = SecondGateway(
        [
            sys.executable, "-m", "gateway", f"--kafka={kafka_bootstrap}", f"--port={port}",
            f"--topic-prefix={up.prefix}",
            "--metrics-port=0", f"--api-keys={data / 'api_keys.toml'}", *RATE_FLAGS,
            *(f"--{name}=127.0.0.1:{ports[name]}" for name in ("ubscore", "matcher", "settlement")),
        ],
        port,
        root / "gateway.log",
    )  # fmt: skip
    forwarder = Forwarder(port)
    try:
        await up.start()
        await gateway.start()
        await forwarder.start()
        yield Mesh(up, gateway, forwarder)
    finally:
        await forwarder.close()
        await gateway.kill()
        await up.kill()
        await drop_database(postgres_dsn, database)


def via_forwarder(mesh: Mesh, key: str) -> AsyncClient:
    """A client patient enough to outlast a gateway restart."""
    return AsyncClient(
        f"127.0.0.1:{mesh.forwarder.port}",
        key,
        timeout=60,
        retries=100,
        retry_backoff=0.05,
        retry_max_backoff=0.5,
    )


async def kill_and_restart(mesh: Mesh) -> None:
    await mesh.gateway.kill()
    mesh.forwarder.hold = False
    await mesh.gateway.start()


async def test_a_place_retried_after_the_gateway_died_is_one_order(mesh: Mesh) -> None:
    up = mesh.up.gateway
    async with (
        AsyncClient(up, ADMIN_KEY) as admin,
        AsyncClient(up, trader_key(901)) as direct,
        via_forwarder(mesh, trader_key(901)) as client,
    ):
        await admin.deposit(901, "USDT", "1000")
        assert set(await client.get_balances()) == {"USDT"}  # the connection is up
        mesh.forwarder.hold = True
        placing = asyncio.create_task(
            client.place_order("BTC-USDT", "BUY", "1", "100", client_order_id="kill-1")
        )
        await eventually(
            direct.get_balances, lambda b: b["USDT"].frozen == 100, "the order's funds frozen"
        )
        assert not placing.done()  # its answer is held back
        await kill_and_restart(mesh)
        placed = await placing
        assert mesh.forwarder.held > 0
        assert (placed.duplicate, placed.client_order_id) == (True, "kill-1")

        async def settled() -> Order | None:
            try:
                return await direct.get_order(client_order_id="kill-1")
            except NotFound:
                return None

        order = await eventually(settled, lambda o: o is not None, "the order in settlement")
        assert order is not None
        assert order.order_id == placed.order_id
        assert [o.client_order_id for o in await direct.list_open_orders()] == ["kill-1"]
        balance = (await direct.get_balances())["USDT"]
        assert (balance.available, balance.frozen) == (D(900), D(100))  # frozen once
        await direct.cancel_order("BTC-USDT", placed.order_id, wait="result")
        await eventually(direct.get_balances, lambda b: b["USDT"].frozen == 0, "the funds released")


async def test_a_deposit_retried_after_the_gateway_died_credits_once(mesh: Mesh) -> None:
    async with (
        AsyncClient(mesh.up.gateway, trader_key(903)) as owner,
        via_forwarder(mesh, ADMIN_KEY) as admin,
    ):
        await admin.list_symbols()  # the connection is up
        mesh.forwarder.hold = True
        depositing = asyncio.create_task(
            admin.deposit(903, "USDT", "5", reference_id="kill-deposit-1")
        )
        await eventually(
            owner.get_balances, lambda b: "USDT" in b and b["USDT"].available == 5, "the credit"
        )
        assert not depositing.done()
        await kill_and_restart(mesh)
        deposited = await depositing
        assert (deposited.duplicate, deposited.balance.available) == (True, D(5))
        assert (await owner.get_balances())["USDT"].available == D(5)


async def test_calls_beyond_the_rate_limit_are_resource_exhausted(mesh: Mesh) -> None:
    async with AsyncClient(f"127.0.0.1:{mesh.gateway.port}", trader_key(902)) as client:

        async def exhaust() -> None:
            for _ in range(10):  # burst 3, 1 per second: the 4th or 5th is refused
                await client.get_balances()

        with pytest.raises(ResourceExhausted) as limited:
            await exhaust()
        assert (limited.value.code, limited.value.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        )
