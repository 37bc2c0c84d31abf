"""`python -m matcher` as a real process on real Kafka: killed mid-stream, restarted, two of
them in one group, fed a record that does not decode, stopped by SIGTERM. Through all of it
ordermesh.engine holds every command's events exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ordermesh.bus.kafka import KafkaBus
from ordermesh.events import OrderCommand
from tests.integration.matcher.conftest import kafka_bus
from tests.integration.matcher.harness import (
    DEADLINE_SECONDS,
    SERVING,
    SYMBOLS,
    Produced,
    check_exact,
    committed_offsets,
    engine_topic,
    eventually,
    health_status,
    orders_topic,
    owners,
    produce,
    read_engine,
    split_between_two,
    straight_run,
    stream,
    wait_processed,
)
from tests.servers.common import free_port, tail

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[3]


class MatcherProcess:
    """One `python -m matcher` child; its JSON log lines go to a file."""

    def __init__(self, bootstrap: str, prefix: str, markets: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.command = [
            sys.executable, "-m", "matcher",
            "--kafka", bootstrap,
            "--port", str(self.port),
            "--metrics-port", "0",
            "--markets", str(markets),
            "--topic-prefix", prefix,
            "--group-id", f"{prefix}matcher",
            "--transactional-id-prefix", prefix.rstrip("."),
            "--kafka-session-timeout-ms", "6000",
            "--kafka-heartbeat-ms", "100",
            "--grace-seconds", "2",
            "--probe-seconds", "0.5",
            *extra,
        ]  # fmt: skip
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MatcherProcess:
        """Launch the child (again, for a restart: its log grows)."""
        env = {**os.environ, "ORDERMESH_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        return self

    async def serving(self) -> None:
        async def status() -> int:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"matcher exited with {self.process.returncode}:\n{tail(self.log)}")
            return await health_status(self.port)

        await eventually(status, lambda s: s == SERVING, what=f"matcher on {self.port} SERVING")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exit_status(self) -> int:
        assert self.process is not None
        try:
            return await asyncio.to_thread(self.process.wait, DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"matcher did not exit; its log:\n{tail(self.log)}")

    def stop_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE_SECONDS)

    def lines(self) -> list[dict[str, Any]]:
        text = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in text if line.startswith("{")]

    def said(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest_asyncio.fixture
async def kafka(kafka_bootstrap: str, kafka_cleanup: None) -> AsyncIterator[KafkaBus]:
    bus = kafka_bus(kafka_bootstrap)
    yield bus
    await bus.close()


@contextlib.asynccontextmanager
async def processes(*matchers: MatcherProcess) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for matcher in matchers:
            matcher.stop_if_running()


async def stream_in(
    bus: KafkaBus, topic: str, commands: Sequence[OrderCommand], produced: Produced
) -> None:
    """Log `commands` in chunks, appending to `produced` as they are acknowledged."""
    for start in range(0, len(commands), 100):
        produced.extend(await produce(bus, topic, commands[start : start + 100]))


async def progressed(bus: KafkaBus, group_id: str, topic: str, past: int) -> None:
    """Wait until the group has committed more than `past` commands in all."""
    await eventually(
        lambda: committed_offsets(bus, group_id, topic),
        lambda found: sum(found.values()) > past,
        what=f"more than {past} commands committed",
    )


async def test_exactly_once_across_a_sigkill_a_sigterm_and_restarts_from_snapshots(
    kafka: KafkaBus, kafka_bootstrap: str, prefix: str, markets_file: Path, tmp_path: Path
) -> None:
    topic, group = orders_topic(prefix), f"{prefix}matcher"
    commands = stream(seed=11, per_symbol=600)  # 3000 commands over five symbols
    matchers = [
        MatcherProcess(kafka_bootstrap, prefix, markets_file, tmp_path / f"{name}.log",
                       "--snapshot-every", "150")
        for name in ("first", "second", "third")
    ]  # fmt: skip
    first, second, third = matchers
    async with processes(*matchers):
        first.start()
        await first.serving()
        produced: Produced = []
        streaming = asyncio.create_task(stream_in(kafka, topic, commands[:2000], produced))
        await progressed(kafka, group, topic, past=1200)
        first.signal(signal.SIGKILL)
        assert await first.exit_status() == -signal.SIGKILL
        await streaming

        second.start()
        await second.serving()
        restored = {line["symbol"] for line in second.said("book restored from snapshot")}
        assert restored == set(SYMBOLS)
        streaming = asyncio.create_task(stream_in(kafka, topic, commands[2000:], produced))
        await progressed(kafka, group, topic, past=2200)
        second.signal(signal.SIGTERM)  # mid-stream: commits its batch, leaves the group
        assert await second.exit_status() == 0
        assert second.said("partitions revoked")
        assert second.said("service stopped")[-1]["exit_status"] == 0
        await streaming

        third.start()
        await third.serving()
        assert len(produced) == len(commands)
        await wait_processed(kafka, group, topic, produced)
        published = await read_engine(kafka, engine_topic(prefix))
        assert check_exact(published, straight_run(produced)) > len(commands)
        third.signal(signal.SIGTERM)
        assert await third.exit_status() == 0


async def test_two_processes_split_the_symbols_and_one_survives_the_other_sigkill(
    kafka: KafkaBus, kafka_bootstrap: str, prefix: str, markets_file: Path, tmp_path: Path
) -> None:
    topic, group = orders_topic(prefix), f"{prefix}matcher"
    commands = stream(seed=12, per_symbol=400)
    one = MatcherProcess(kafka_bootstrap, prefix, markets_file, tmp_path / "one.log").start()
    two = MatcherProcess(kafka_bootstrap, prefix, markets_file, tmp_path / "two.log").start()
    async with processes(one, two):
        await one.serving()
        await two.serving()
        split = await eventually(
            lambda: owners(one.port, two.port),
            split_between_two,
            what="every symbol served by exactly one of the two, and both serving some",
        )
        produced: Produced = []
        streaming = asyncio.create_task(stream_in(kafka, topic, commands, produced))
        await progressed(kafka, group, topic, past=500)
        one.signal(signal.SIGKILL)
        await streaming
        # After its session times out, the survivor fences the dead one's transactional
        # ids and replays its partitions up to the committed offsets.
        await wait_processed(kafka, group, topic, produced)
        published = await read_engine(kafka, engine_topic(prefix))
        check_exact(published, straight_run(produced))
        survivor = await eventually(
            lambda: owners(two.port), lambda found: all(found.values()), what="survivor owns all"
        )
        assert all(o == [0] for o in survivor.values()), (split, survivor)


async def test_a_record_that_does_not_decode_makes_the_process_exit_non_zero(
    kafka: KafkaBus, kafka_bootstrap: str, prefix: str, markets_file: Path, tmp_path: Path
) -> None:
    topic, group = orders_topic(prefix), f"{prefix}matcher"
    matcher = MatcherProcess(kafka_bootstrap, prefix, markets_file, tmp_path / "m.log").start()
    async with processes(matcher):
        await matcher.serving()
        produced = await produce(kafka, topic, stream(seed=13, per_symbol=5))
        await wait_processed(kafka, group, topic, produced)
        producer = kafka.producer()
        await producer.start()
        garbage = await producer.send(topic, b"\x08\x96\x01 not an order", key=b"XRP-USDT")
        await producer.stop()
        assert await matcher.exit_status() == 1
        failure = matcher.said("fail-stop")[-1]
        assert "is not an OrderCommand" in failure["error"]
        assert f"[{garbage.partition}]@{garbage.offset}" in failure["error"]
    committed = await committed_offsets(kafka, group, topic)
    assert committed.get(garbage.partition, 0) == garbage.offset
