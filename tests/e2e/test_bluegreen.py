"""Blue-green rollout of the gateway behind nginx, under load, with nothing failing.

Real everything: Kafka and PostgreSQL, ubscore/matcher/settlement as one `ordermesh up`
process (its own gateway unused), nginx from the distribution as the gRPC proxy, and the
gateways as `python -m gateway` processes started and stopped by `python -m ordermesh.rollout
local`. A client places orders and reads balances through nginx all along, while:

1. a bad green (its ubscore address leads nowhere, so its health says NOT_SERVING) is
   refused at the `ready` step, traffic staying on blue;
2. a good green takes over from blue, and blue is drained and stopped.

No call may fail, and every order placed is in ListOrders exactly once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest
import pytest_asyncio

from ordermesh.v1 import common_pb2 as common
from ordermesh.v1 import gateway_pb2 as api
from ordermesh.v1 import gateway_pb2_grpc
from tests.e2e.mesh_process import all_serving, clean_environment, eventually, free_ports
from tests.e2e.test_up_external import ExternalUp
from tests.servers.common import tail, unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(240)]

ROLLOUT_SECONDS = 60.0
LOAD_PERIOD_SECONDS = 0.02  # each worker's pace: a steady, bounded stream
LOAD_WORKERS = 3
LOAD_MOST_CALLS = 6000
LOAD_MOST_SECONDS = 90.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        raise unavailable(
            "nginx is needed for the blue-green test: apt-get install nginx-light "
            "(scripts/bootstrap.sh does it when run as root)"
        ) from None
    return found


@dataclass
class Edge:
    """nginx and the two gateway colors, as the rollout command sees them."""

    state_dir: Path
    listen: str
    preview: str
    ports: dict[str, int]
    probe_key_file: Path
    gateway_command: list[str]
    nginx: str
    nginx_process: asyncio.subprocess.Process | None = None

    def rollout_argv(self, *extra: str, command: list[str] | None = None) -> list[str]:
        return [
            sys.executable, "-m", "ordermesh.rollout", "local",
            "--state-dir", str(self.state_dir), "--listen", self.listen,
            "--preview-listen", self.preview, "--blue-port", str(self.ports["blue"]),
            "--green-port", str(self.ports["green"]), "--nginx", self.nginx,
            "--probe-key-file", str(self.probe_key_file), "--ready-timeout", "30",
            "--drain-timeout", "20", "--stop-timeout", "20", *extra,
            "--", *(command or self.gateway_command),
        ]  # fmt: skip

    async def rollout(self, *extra: str, command: list[str] | None = None) -> tuple[int, str]:
        """Run the rollout command to its end: its exit status and output."""
        process = await asyncio.create_subprocess_exec(
            *self.rollout_argv(*extra, command=command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=clean_environment(),
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), ROLLOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"the rollout did not end within {ROLLOUT_SECONDS} s")
        assert process.returncode is not None
        return process.returncode, output.decode(errors="replace")

    async def start_nginx(self) -> None:
        status, output = await self.rollout("--init")
        assert status == 0, output
        argv = shlex.split(output.strip().splitlines()[-1])
        log = (self.state_dir / "nginx.stdout").open("ab")
        self.nginx_process = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        log.close()
        await eventually(
            self._pid_written,
            bool,
            what=f"nginx to start; its log:\n{tail(self.state_dir / 'nginx-error.log')}",
        )

    async def _pid_written(self) -> bool:
        return (self.state_dir / "nginx.pid").exists()

    def live(self) -> str:
        return (self.state_dir / "live").read_text().strip()

    def gateway_pid(self, color: str) -> int | None:
        path = self.state_dir / f"{color}.pid"
        return int(path.read_text().split()[0]) if path.exists() else None

    async def close(self) -> None:
        for color in ("blue", "green"):
            pid = self.gateway_pid(color)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # a gateway this test's rollouts started
        if self.nginx_process is not None and self.nginx_process.returncode is None:
            self.nginx_process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                await asyncio.wait_for(self.nginx_process.wait(), 10)
            except TimeoutError:
                self.nginx_process.kill()
                await self.nginx_process.wait()


@dataclass
class Load:
    """A steady, bounded stream of PlaceOrder and GetBalances through nginx."""

    stub: gateway_pb2_grpc.GatewayAsyncStub
    key: str
    prefix: str
    placed: dict[str, int] = field(default_factory=dict)
    """client_order_id -> order_id, for every PlaceOrder answered."""
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        deadline = time.monotonic() + LOAD_MOST_SECONDS
        workers = [self._worker(n, deadline) for n in range(LOAD_WORKERS)]
        await asyncio.gather(*workers)

    async def _worker(self, number: int, deadline: float) -> None:
        metadata = (("x-api-key", self.key),)
        sequence = 0
        while not self.stop.is_set() and self.calls < LOAD_MOST_CALLS:
            if time.monotonic() > deadline:
                self.failures.append("the load ran past its time bound")
                return
            sequence += 1
            client_order_id = f"{self.prefix}-{number}-{sequence}"
            request = api.PlaceOrderRequest(
                symbol="BTC-USDT", side=common.SIDE_BUY, order_type=common.ORDER_TYPE_LIMIT,
                time_in_force=common.TIME_IN_FORCE_GTC, price="100.00", quantity="0.01",
                client_order_id=client_order_id,
            )  # fmt: skip
            try:
                answer = await self.stub.PlaceOrder(request, metadata=metadata, timeout=10)
                self.placed[client_order_id] = answer.order_id
                await self.stub.GetBalances(api.GetBalancesRequest(), metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as e:
                self.failures.append(f"{client_order_id}: {e.code().name} {e.details()}")
            self.calls += 2
            await asyncio.sleep(LOAD_PERIOD_SECONDS)  # the load's pace, not a synchronisation


@pytest_asyncio.fixture
async def backends(
    tmp_path: Path, kafka_bootstrap: str, pg_database: str
) -> AsyncIterator[ExternalUp]:
    names = ("gateway", "ubscore", "matcher", "settlement")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    ports["metrics"] = 0  # not needed here: one port fewer to race for
    process = ExternalUp(tmp_path / "data", ports, kafka_bootstrap, pg_database)
    try:
        await process.start()
        await all_serving(process)
        yield process
    finally:
        await process.kill()


@pytest_asyncio.fixture
async def edge(tmp_path: Path, backends: ExternalUp, kafka_bootstrap: str) -> AsyncIterator[Edge]:
    nginx = nginx_binary()
    listen, preview, blue, green = free_ports(4)
    probe_key_file = tmp_path / "probe.key"
    probe_key_file.write_text(backends.keys()["demo-trader-2"])
    probe_key_file.chmod(0o600)
    command = gateway_command(backends, kafka_bootstrap, ubscore=backends.ports["ubscore"])
    edge = Edge(
        tmp_path / "edge", f"127.0.0.1:{listen}", f"127.0.0.1:{preview}",
        {"blue": blue, "green": green}, probe_key_file, command, nginx,
    )  # fmt: skip
    try:
        await edge.start_nginx()
        yield edge
    finally:
        await edge.close()


def gateway_command(backends: ExternalUp, kafka: str, *, ubscore: int) -> list[str]:
    ports = backends.ports
    return [
        sys.executable, "-m", "gateway", "--port", "{port}", "--metrics-port", "0",
        "--kafka", kafka, "--topic-prefix", backends.prefix, "--ubscore", f"127.0.0.1:{ubscore}",
        "--matcher", f"127.0.0.1:{ports['matcher']}",
        "--settlement", f"127.0.0.1:{ports['settlement']}",
        "--api-keys", str(backends.data_dir / "api_keys.toml"),
        "--probe-seconds", "0.2", "--grace-seconds", "5", "--rate-per-second", "10000",
        "--burst", "10000", "--log-format", "json",
    ]  # fmt: skip


async def orders_listed(
    stub: gateway_pb2_grpc.GatewayAsyncStub, key: str, prefix: str
) -> list[str]:
    """Every client_order_id of this test's orders in ListOrders, duplicates included."""
    found: list[str] = []
    token = ""
    while True:
        page = await stub.ListOrders(
            api.ListOrdersRequest(symbol="BTC-USDT", page_size=1000, page_token=token),
            metadata=(("x-api-key", key),),
            timeout=10,
        )
        found += [o.client_order_id for o in page.orders if o.client_order_id.startswith(prefix)]
        token = page.next_page_token
        if not token:
            return found


@pytest.mark.asyncio
async def test_blue_green_under_load_with_no_failed_call(
    edge: Edge, backends: ExternalUp, kafka_bootstrap: str
) -> None:
    status, output = await edge.rollout()
    assert status == 0, output
    assert "rollout done: traffic is on blue" in output
    assert edge.live() == "blue"

    keys = backends.keys()
    prefix = f"bg{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(edge.listen) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        deposit = api.DepositRequest(
            account_id=1, asset="USDT", amount="100000", reference_id=f"{prefix}-fund"
        )
        await stub.Deposit(deposit, metadata=(("x-api-key", keys["admin"]),), timeout=10)
        load = Load(stub, keys["demo-trader-1"], prefix)
        running = asyncio.ensure_future(load.run())
        try:
            await eventually(lambda: _calls(load), lambda n: n >= 50, what="the load to flow")

            # A green that cannot reach ubscore never says SERVING: refused, blue keeps traffic.
            dead = free_ports(1)[0]
            bad = gateway_command(backends, kafka_bootstrap, ubscore=dead)
            before = load.calls
            status, output = await edge.rollout("--ready-timeout", "4", command=bad)
            assert status == 1, output
            assert "rollout FAILED at step ready: green is not ready" in output, output
            assert "health says NOT_SERVING" in output, output
            assert "traffic is on blue" in output, output
            assert "rollback: scale green down: ok" in output, output
            assert edge.live() == "blue"
            assert edge.gateway_pid("green") is None
            assert load.calls > before, "the load went on during the refused rollout"

            # A good green takes over; blue drains and stops.
            blue_pid = edge.gateway_pid("blue")
            before = load.calls
            status, output = await edge.rollout()
            assert status == 0, output
            assert "rollout done: traffic is on green" in output, output
            assert edge.live() == "green"
            assert edge.gateway_pid("blue") is None
            assert blue_pid is not None
            assert not _alive(blue_pid)
            during = load.calls
            assert during > before, "the load went on during the rollout"
            await eventually(lambda: _calls(load), lambda n: n >= during + 50, what="load on green")
        finally:
            load.stop.set()
            await asyncio.wait_for(running, 30)

        assert load.failures == []
        assert len(set(load.placed.values())) == len(load.placed), "one order_id per order"
        listed = await eventually(
            lambda: orders_listed(stub, keys["demo-trader-1"], prefix),
            lambda ids: len(ids) >= len(load.placed),
            what=f"the {len(load.placed)} orders placed to be settled",
        )
        assert sorted(listed) == sorted(load.placed), "each order listed exactly once"
    print(f"{load.calls} calls, {len(load.placed)} orders, 0 failed; the rollout said:\n{output}")
    blue_log = (edge.state_dir / "blue.log").read_text()
    assert "service stopped" in blue_log, tail(edge.state_dir / "blue.log")
    assert '"exit_status": 0' in blue_log, tail(edge.state_dir / "blue.log")


async def _calls(load: Load) -> int:
    return load.calls


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
