"""`python -m settlement` as a real process on real Kafka: SIGKILL mid-stream, restart.

Every trade ends up in PostgreSQL exactly once, the restart resumes at the offsets the
killed process committed, and SIGTERM is a graceful stop with exit status 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from ordermesh.bus.base import TopicSpec
from ordermesh.bus.kafka import KafkaBus
from settlement.consumer import SettlementTopics
from tests.integration.settlement.harness import (
    check_against_the_core,
    eventually,
    expected_offsets,
    fetch,
)
from tests.servers.common import free_port, run_async
from tests.servers.kafka import delete_topics
from tests.unit.settlement.exchange import Exchange, random_session

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[3]
SECONDS = 60.0


@pytest_asyncio.fixture
async def topics(kafka_bootstrap: str, prefix: str) -> AsyncIterator[SettlementTopics]:
    names = SettlementTopics.with_prefix(prefix)
    bus = KafkaBus(kafka_bootstrap, client_id="settlement-process-tests")
    try:
        await bus.create_topics(
            [TopicSpec(n, 2) for n in (names.orders, names.engine, names.ledger)]
        )
    finally:
        await bus.close()
    yield names
    run_async(lambda: delete_topics(kafka_bootstrap, [names.orders, names.engine, names.ledger]))


async def produce(bootstrap: str, topics: SettlementTopics, ex: Exchange) -> None:
    """Publish fast: every send queued, then all acknowledgements awaited (order kept)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        pending = [
            await producer.send(topics.topic(r.source), r.value, key=r.key, partition=r.partition)
            for r in ex.records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class Settlement:
    """One `python -m settlement` process, its log in a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMESH_")}
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "settlement", *args],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def wait(self, seconds: float = SECONDS) -> int:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(None, self.process.wait), seconds)

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def committed(dsn: str) -> dict[tuple[str, int], int]:
    try:
        rows = await fetch(dsn, "SELECT topic, partition, next_offset FROM consumer_offsets")
    except Exception:  # the schema may not exist yet
        return {}
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def trade_count(dsn: str) -> int:
    try:
        return int((await fetch(dsn, "SELECT count(*) AS n FROM trades"))[0]["n"])
    except Exception:
        return 0


async def test_sigkill_mid_stream_then_restart_settles_every_trade_once(
    kafka_bootstrap: str, pg_database: str, prefix: str, topics: SettlementTopics, tmp_path: Path
) -> None:
    ex = random_session(21, 1_200)
    expected_trades = sum(1 for e in ex.engine_events() if type(e.body).__name__ == "TradeExecuted")
    await produce(kafka_bootstrap, topics, ex)
    args = ["--kafka", kafka_bootstrap, "--postgres", pg_database, "--metrics-port", "0",
            "--topic-prefix", prefix, "--partitions", "2", "--batch-max", "64",
            "--batch-wait-ms", "0", "--log-level", "info"]  # fmt: skip

    first = Settlement(tmp_path / "first.log", *args, "--port", str(free_port()))
    try:
        await eventually(lambda: trade_count(pg_database), lambda n: n >= expected_trades // 3,
                         what="a third of the trades", seconds=SECONDS)  # fmt: skip
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        first.stop()
    at_kill = await committed(pg_database)
    trades_at_kill = await trade_count(pg_database)
    assert 0 < trades_at_kill < expected_trades, "killed after the end: a bigger stream is needed"

    second = Settlement(tmp_path / "second.log", *args, "--port", str(free_port()))
    try:
        wanted = expected_offsets(topics, ex.records)
        await eventually(lambda: committed(pg_database), lambda got: got == wanted,
                         what="every offset committed", seconds=SECONDS)  # fmt: skip
        second.process.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
    finally:
        second.stop()

    positioned = next(
        line for line in second.lines() if line.get("event") == "settlement consumer positioned"
    )
    assert positioned["offsets"] == {f"{t}[{p}]": o for (t, p), o in sorted(at_kill.items())}
    assert any(line.get("event") == "service stopped" and line.get("exit_status") == 0
               for line in second.lines())  # fmt: skip
    assert await trade_count(pg_database) == expected_trades
    await check_against_the_core(pg_database, ex)
