"""Blue-green hand-over by Kafka fencing (DESIGN §9), real processes on real Kafka.

Blue `python -m ubscore` and blue `python -m matcher` serve a stream of orders from retrying
clients. Green instances of both start with `--role standby`, catch up from the log, and are
promoted (ubscore with the `python -m ordermesh.handover` command line, the matcher with the
admin RPC). Each blue is fenced and exits with EXIT_FENCED; the clients move to green and
resend whatever blue could not answer. Blue ubscore, restarted as it was configured, finds
green's owner record and stands by instead of fencing green back. Then the log is the judge,
as after the SIGKILL test (`test_restarts`): every acked order logged once with one outcome,
the engine topic byte-identical to a straight run of the orders topic (sequence and hash
chain continuous), and green's balances equal to a replay from scratch.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest

from ordermesh.bus.kafka import KafkaBus
from ordermesh.markets import DEFAULT_MARKETS_PATH
from ordermesh.runtime import EXIT_FENCED
from ordermesh.v1 import admin_pb2, admin_pb2_grpc, ubscore_pb2, ubscore_pb2_grpc
from tests.integration.matcher.conftest import kafka_bus
from tests.integration.matcher.harness import (
    PARTITIONS,
    check_exact,
    read_engine,
    straight_run,
    wait_processed,
)
from tests.integration.matcher.test_process import MatcherProcess
from tests.integration.mesh.harness import decoded, group_of, orders_logged, replayed, unused_port
from tests.integration.mesh.test_restarts import (
    ACCOUNTS,
    FUNDS,
    Processes,
    Traffic,
    check_balances,
    check_outcomes,
    check_trade_ids,
    stream,
)
from tests.integration.ubscore.harness import MARKETS, eventually
from tests.integration.ubscore.test_process import CHANNEL_OPTIONS, UBSCoreProcess, until_serving
from tests.servers.common import tail
from ubscore.lifecycle import LogTopics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
SEED = 77
RESERVES = 1_200
CLIENTS = 6
GREEN_STARTS_AT = 150
UBSCORE_PROMOTED_AT = 400
MATCHER_PROMOTED_AT = 650
BUDGET_SECONDS = 80.0


class HandOverTraffic(Traffic):
    """Clients that also resend a call the old owner reset with CANCELLED while it stopped.

    A gRPC server going away resets the calls it received but had not started (HTTP/2
    RST_STREAM, which the client reads as CANCELLED); resending with the same id is safe.
    """

    async def answered(self, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await super().answered(call)
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    raise
                self.retries += 1


class Switch:
    """A UBSCore stub that follows whichever instance the test points it at."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class Instance:
    """A gRPC channel to one instance, with its admin stub."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        self.admin: Any = admin_pb2_grpc.AdminStub(self.channel)

    async def role(self) -> admin_pb2.AdminGetRoleResponse | None:
        try:
            response: admin_pb2.AdminGetRoleResponse = await self.admin.GetRole(
                admin_pb2.AdminGetRoleRequest(), timeout=5
            )
        except grpc.aio.AioRpcError:
            return None  # not listening yet
        return response

    async def caught_up(self, what: str) -> None:
        await eventually(self.role, lambda r: r is not None and r.caught_up, what=what, seconds=40)


async def promote_with_the_command_line(port: int) -> str:
    """`python -m ordermesh.handover promote`, as a rollout script runs it; its stdout."""
    command = [sys.executable, "-m", "ordermesh.handover", "promote",
               "--target", f"127.0.0.1:{port}", "--timeout", "40"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Colours:
    """Blue and green of both services: processes, channels, a bus to read the log with."""

    ubscores: tuple[UBSCoreProcess, UBSCoreProcess]
    matchers: tuple[MatcherProcess, MatcherProcess]
    instances: tuple[Instance, Instance, Instance, Instance]
    """blue ubscore, green ubscore, blue matcher, green matcher."""
    bus: KafkaBus
    prefix: str
    phase: str = "starting"

    def logs(self) -> str:
        processes = (*self.ubscores, *self.matchers)
        return "\n".join(f"{p.log.name}:\n{tail(p.log, 25)}" for p in processes)


def colours(bootstrap: str, prefix: str, tmp_path: Path) -> Colours:
    """Blue (active) and green (standby) processes of ubscore and the matcher, not started."""
    ports = [unused_port() for _ in range(4)]
    ubscores = []
    for name, port in zip(("blue", "green"), ports[:2], strict=True):
        process = UBSCoreProcess(bootstrap, prefix, port, tmp_path / f"{name}-ubscore.log")
        process.command += ["--partitions", str(PARTITIONS), "--snapshot-every", "500",
                            "--instance", name]  # fmt: skip
        ubscores.append(process)
    ubscores[1].command += ["--role", "standby"]
    matchers = []
    for name, port in zip(("blue", "green"), ports[2:], strict=True):
        matcher = MatcherProcess(
            bootstrap, prefix, DEFAULT_MARKETS_PATH, tmp_path / f"{name}-matcher.log",
            "--snapshot-every", "100", "--port", str(port), "--instance", f"{name}-matcher",
        )  # fmt: skip
        matcher.port = port  # the last --port wins
        matchers.append(matcher)
    matchers[1].command += ["--role", "standby"]
    instances = tuple(Instance(port) for port in ports)
    return Colours(
        (ubscores[0], ubscores[1]),
        (matchers[0], matchers[1]),
        (instances[0], instances[1], instances[2], instances[3]),
        kafka_bus(bootstrap),
        prefix,
    )


async def test_blue_green_hand_over_of_ubscore_and_matcher_mid_stream(
    kafka_bootstrap: str, kafka_cleanup: None, prefix: str, tmp_path: Path
) -> None:
    mesh = colours(kafka_bootstrap, prefix, tmp_path)
    budget = asyncio.timeout(BUDGET_SECONDS)
    try:
        async with budget:
            traffic = await start_blue(mesh)
            await hand_over_mid_stream(mesh, traffic)
            await check_the_log(mesh, traffic)
    except TimeoutError:
        if not budget.expired():
            raise
        pytest.fail(f"not done within {BUDGET_SECONDS} s, while {mesh.phase}\n{mesh.logs()}")
    finally:
        for instance in mesh.instances:
            await instance.channel.close()
        for process in (*mesh.ubscores, *mesh.matchers):
            process.stop_if_running()
        await mesh.bus.close()


async def start_blue(mesh: Colours) -> Traffic:
    """Blue ubscore and matcher serving, the accounts funded; the clients, aimed at blue."""
    blue = mesh.instances[0]
    mesh.ubscores[0].start()
    await until_serving(mesh.ubscores[0], blue.channel)
    mesh.matchers[0].start()
    await mesh.matchers[0].serving()
    mesh.phase = "funding the accounts"
    traffic = HandOverTraffic(cast(Any, Switch(ubscore_pb2_grpc.UBSCoreStub(blue.channel))))
    for account in ACCOUNTS:
        for asset, amount in FUNDS.items():
            await traffic.send(
                ubscore_pb2.UBSCoreDepositRequest(
                    account_id=account, asset=asset, amount=amount,
                    reference_id=f"fund-{account}-{asset}",
                )
            )  # fmt: skip
    return traffic


async def hand_over_mid_stream(mesh: Colours, traffic: Traffic) -> None:
    """Stream the orders; start green, promote green ubscore, then green matcher."""
    blue_ubscore, green_ubscore = mesh.ubscores
    blue_matcher, green_matcher = mesh.matchers
    blue, green, _, green_m = mesh.instances
    mesh.phase = "streaming orders, starting green"
    sending = asyncio.create_task(traffic.run(stream(SEED, RESERVES), CLIENTS))
    try:
        await traffic.reached(GREEN_STARTS_AT)
        green_ubscore.start()
        green_matcher.start()
        await green.caught_up("green ubscore caught up")
        await green_m.caught_up("green matcher caught up")

        mesh.phase = "promoting green ubscore"
        await traffic.reached(UBSCORE_PROMOTED_AT)
        assert '"ROLE_ACTIVE"' in await promote_with_the_command_line(green.port)
        cast(Switch, traffic.stub).target = ubscore_pb2_grpc.UBSCoreStub(green.channel)
        assert await blue_ubscore.exit_status() == EXIT_FENCED

        mesh.phase = "promoting green matcher"
        await traffic.reached(MATCHER_PROMOTED_AT)
        promoted = await green_m.admin.Promote(admin_pb2.AdminPromoteRequest(), timeout=40)
        assert promoted.role == admin_pb2.ROLE_ACTIVE
        assert await blue_matcher.exit_status() == EXIT_FENCED

        mesh.phase = "restarting blue ubscore"
        blue_ubscore.start()  # as configured: --role active
        await eventually(
            blue.role,
            lambda r: r is not None and r.role == admin_pb2.ROLE_STANDBY and r.caught_up,
            what="the restarted blue ubscore standing by",
            seconds=40,
        )
        mesh.phase = "streaming the rest of the orders to green"
        await sending
    finally:
        sending.cancel()
    assert len(traffic.acked) == RESERVES
    assert traffic.retries > 0, "no client met a hand-over: it was not mid-stream"
    reasons = [str(e.get("reason", "")) for e in blue_ubscore.events()]
    assert any("fenced" in reason for reason in reasons), "blue did not log why it stopped"


async def check_the_log(mesh: Colours, traffic: Traffic) -> None:
    """One outcome per acked order, the engine topic as a straight run, balances as replayed."""
    mesh.phase = "checking the log"
    green_ubscore, green_matcher = mesh.ubscores[1], mesh.matchers[1]
    topics = LogTopics.with_prefix(mesh.prefix)
    judged = Processes(
        green_ubscore,
        green_matcher,
        mesh.instances[1].channel,
        mesh.bus,
        topics,
        group_of(mesh.prefix),
    )
    produced = await orders_logged(mesh.bus, topics)
    await wait_processed(mesh.bus, judged.group, topics.orders, produced, 30)
    published = await read_engine(mesh.bus, topics.engine)
    check_exact(published, straight_run(produced, MARKETS))
    events = decoded(published)
    check_trade_ids(events)
    rebuilt = await replayed(mesh.bus, topics)
    await check_outcomes(judged, traffic, produced, events, rebuilt)
    await check_balances(judged, rebuilt)
    # The restarted blue stood by all along: green was never fenced back.
    assert green_ubscore.process is not None
    assert green_ubscore.process.poll() is None, "the restarted blue fenced green back"
    role = await mesh.instances[1].role()
    assert role is not None
    assert role.role == admin_pb2.ROLE_ACTIVE
