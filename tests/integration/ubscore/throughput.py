"""Reserve ack latency and throughput of `python -m ubscore` on Kafka, over gRPC.

Not a test: a quick, bounded measurement. It starts one `python -m ubscore` process on the
broker --kafka names (from --source, a checkout of the project: default this one, so an
older tree can be measured the same way), funds --accounts accounts, then runs --clients
closed-loop clients that each send Reserve after Reserve (unique client_order_ids, LIMIT BUY
BTC-USDT) for --seconds. Latency is from send to ack; throughput is acks per second. Prints
one JSON line per client count.

    .venv/bin/python -m tests.integration.ubscore.throughput --kafka 127.0.0.1:9092 \
        --clients 1 --clients 64 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import grpc

from ordermesh.bus import topics
from ordermesh.snapshots import SNAPSHOTS
from ordermesh.v1 import ubscore_pb2_grpc
from tests.integration.ubscore.harness import BUY, USDT_UNIT, deposit, health_status, limit_order
from tests.servers.common import free_port
from tests.servers.kafka import delete_topics

ROOT = Path(__file__).resolve().parents[3]


async def until_serving(channel: grpc.aio.Channel, process: subprocess.Popen[bytes]) -> None:
    """Wait (at most 60 s) for SERVING; fail if the process exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ubscore exited with {process.returncode}")
        try:
            if await health_status(channel) == 1:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)  # poll interval of a deadline-bounded wait
    raise RuntimeError("ubscore did not serve within 60 s")


async def load(stub: Any, clients: int, seconds: float, accounts: int) -> dict[str, object]:
    """`clients` closed-loop clients for `seconds`; latency percentiles and acks per second."""
    latencies: list[float] = []
    run = uuid.uuid4().hex[:6]
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        count = 0
        while time.perf_counter() < stop_at:
            account = 1 + (index + count * clients) % accounts
            request = limit_order(account, BUY, f"{run}-{index}-{count}")
            sent = time.perf_counter()
            await stub.Reserve(request, timeout=30)
            latencies.append(time.perf_counter() - sent)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "clients": clients,
        "acks": len(latencies),
        "acks_per_second": round(len(latencies) / elapsed),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
    }


def launch(command: list[str], source: Path, sink: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `command` in `source`, importing the project from there."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.Popen(command, cwd=source, env=env, stdout=sink, stderr=sink)


async def measure(args: argparse.Namespace) -> list[dict[str, object]]:
    """Start ubscore from `args.source`, fund the accounts, run each client count."""
    prefix = f"tu{uuid.uuid4().hex[:8]}."
    port = free_port()
    command = [sys.executable, "-m", "ubscore", "--kafka", args.kafka, "--port", str(port),
               "--metrics-port", "0", "--topic-prefix", prefix, "--log-level", "warning",
               "--snapshot-every", "1000000"]  # fmt: skip
    with tempfile.TemporaryFile() as sink:
        process = launch(command, args.source, sink)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            await until_serving(channel, process)
            stub: Any = ubscore_pb2_grpc.UBSCoreStub(channel)
            for account in range(1, args.accounts + 1):
                await deposit(stub, account, "USDT", 10**9 * USDT_UNIT, f"fund-{account}")
            return [
                {"source": str(args.source), **await load(stub, c, args.seconds, args.accounts)}
                for c in args.clients
            ]
        finally:
            await channel.close()
            process.terminate()
            process.wait(30)
            names = [prefix + t for t in (topics.ORDERS, topics.LEDGER, topics.ENGINE)]
            await delete_topics(args.kafka, [*names, prefix + SNAPSHOTS])


def main() -> None:
    """Parse the flags, measure, print one JSON line per client count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--kafka", required=True, help="bootstrap servers")
    parser.add_argument("--source", type=Path, default=ROOT, help="the project tree to run")
    parser.add_argument("--clients", type=int, action="append", default=[])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=50)
    args = parser.parse_args()
    args.clients = args.clients or [1, 64]
    for figures in asyncio.run(measure(args)):
        print(json.dumps(figures))  # the figures are the output


if __name__ == "__main__":
    main()
