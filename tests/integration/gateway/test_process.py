"""`python -m gateway` as a real process on real Kafka, in front of the three services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.bus import topics
from ordermesh.snapshots import SNAPSHOTS
from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2_grpc
from tests.integration.gateway.harness import (
    DEADLINE_SECONDS,
    Mesh,
    deposit,
    eventually,
    limit,
    place,
    start_services,
)
from tests.integration.matcher.conftest import kafka_bus
from tests.servers.common import free_port, run_async, tail
from tests.servers.kafka import delete_topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[3]


async def health(channel: grpc.aio.Channel) -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
    try:
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.aio.AioRpcError:
        return -1
    status: int = answer.status
    return status


async def test_python_m_gateway_trades_on_kafka_and_stops_on_sigterm(
    kafka_bootstrap: str, pg_database: str, key_file: Path, tmp_path: Path
) -> None:
    prefix = f"gp{uuid.uuid4().hex[:8]}."
    bus = kafka_bus(kafka_bootstrap)
    log = tmp_path / "gateway.log"
    try:
        async with contextlib.AsyncExitStack() as stack:
            services = await start_services(stack, bus, pg_database, prefix)
            port = free_port()
            ports = services.ports
            command = [
                sys.executable, "-m", "gateway", "--kafka", kafka_bootstrap,
                "--port", str(port), "--metrics-port", "0", "--topic-prefix", prefix,
                "--ubscore", f"127.0.0.1:{ports['ubscore']}",
                "--matcher", f"127.0.0.1:{ports['matcher']}",
                "--settlement", f"127.0.0.1:{ports['settlement']}",
                "--api-keys", str(key_file), "--probe-seconds", "0.2", "--grace-seconds", "2",
            ]  # fmt: skip
            process = _spawn(command, log)
            stack.callback(_kill, process)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            await eventually(
                lambda: health(channel),
                lambda status: status == health_pb2.HealthCheckResponse.SERVING,
                what=f"the gateway process to serve; its log:\n{tail(log)}",
            )
            client = Mesh(
                bus, prefix, services.ubscore, services.matcher, services.settlement,
                services.ubscore, channel, gateway_pb2_grpc.GatewayStub(channel),
            )  # fmt: skip
            buyer, seller = client.accounts(2)
            await deposit(client, buyer, "USDT", "1000")
            await deposit(client, seller, "BTC", "1")
            rested = await place(client, seller, limit(S.SIDE_SELL, "100", "0.5", "k-sell"))
            assert rested.status == S.ORDER_STATUS_NEW
            taken = await place(client, buyer, limit(S.SIDE_BUY, "100", "0.5", "k-buy"))
            assert (taken.status, [f.price for f in taken.fills]) == (
                S.ORDER_STATUS_FILLED,
                ["100"],
            )
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(process.wait, DEADLINE_SECONDS)
            assert status == 0, tail(log)
    finally:
        await bus.close()
        names = [prefix + name for name in (topics.ORDERS, topics.ENGINE, topics.LEDGER)]
        names.append(prefix + SNAPSHOTS)
        run_async(lambda: delete_topics(kafka_bootstrap, names))


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORDERMESH_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as sink:
        return subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(DEADLINE_SECONDS)
