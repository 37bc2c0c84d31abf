"""`python -m ubscore` as a real process on real Kafka: killed mid-stream, stopped by SIGTERM,
restarted; what it serves afterwards is what the log says, every acked request exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ordermesh.bus.kafka import KafkaBus
from ordermesh.model import AccountId
from ordermesh.snapshots import BusSnapshotStore
from ordermesh.v1 import ubscore_pb2_grpc
from tests.integration.ubscore.harness import (
    BUY,
    DEADLINE_SECONDS,
    MARKETS,
    SERVING,
    USDT_UNIT,
    balances,
    commands,
    deposit,
    eventually,
    health_status,
    limit_order,
    new_orders,
    read_all,
)
from tests.servers.common import free_port, run_async, tail
from tests.servers.kafka import delete_topics
from ubscore.codec import decode_snapshot
from ubscore.consumer import apply_record
from ubscore.core import UBSCore
from ubscore.lifecycle import LogTopics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROOT = Path(__file__).resolve().parents[3]
ACCOUNTS = (1, 2, 3, 4)
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


class UBSCoreProcess:
    """One `python -m ubscore` child; its JSON log lines go to a file."""

    def __init__(self, bootstrap: str, prefix: str, port: int, log: Path) -> None:
        self.command = [
            sys.executable,
            "-m",
            "ubscore",
            "--kafka",
            bootstrap,
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--topic-prefix",
            prefix,
            "--partitions",
            "2",
            "--snapshot-every",
            "100",
            "--grace-seconds",
            "2",
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ORDERMESH_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exit_status(self) -> int:
        assert self.process is not None
        try:
            return await asyncio.to_thread(self.process.wait, DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ubscore did not exit; its log:\n{tail(self.log)}")

    def stop_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE_SECONDS)

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def topics() -> tuple[str, LogTopics]:
    prefix = f"p{os.urandom(5).hex()}."
    return prefix, LogTopics.with_prefix(prefix)


@contextlib.asynccontextmanager
async def ubscore(
    kafka_bootstrap: str, prefix: str, log: Path
) -> AsyncIterator[tuple[UBSCoreProcess, Any]]:
    """A ubscore process and a stub to it; the process is killed if still running at the end."""
    port = free_port()
    process = UBSCoreProcess(kafka_bootstrap, prefix, port, log)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    try:
        yield process, channel
    finally:
        await channel.close()
        process.stop_if_running()
        names = [f"{prefix}{name}" for name in ("ordermesh.orders", "ordermesh.ledger")]
        names += [f"{prefix}ordermesh.engine", f"{prefix}ordermesh.snapshots"]
        run_async(lambda: delete_topics(kafka_bootstrap, names))


async def until_serving(process: UBSCoreProcess, channel: grpc.aio.Channel) -> None:
    async def probe() -> int:
        assert process.process is not None
        if process.process.poll() is not None:
            pytest.fail(f"ubscore exited with {process.process.returncode}:\n{tail(process.log)}")
        try:
            return await health_status(channel)
        except grpc.aio.AioRpcError:
            return -1

    await eventually(probe, lambda status: status == SERVING, what="ubscore health", seconds=60)


async def rebuilt_from_the_log(bus: KafkaBus, topics: LogTopics) -> UBSCore:
    """A core rebuilt from scratch by replaying the three topics, as a fresh start would."""
    core = UBSCore(MARKETS)
    for name in (topics.orders, topics.ledger, topics.engine):
        for record in await read_all(bus, name):
            apply_record(core, topics, record)
    core.finish_replay()
    return core


async def drive_until_killed(
    stub: Any, process: UBSCoreProcess, kill_after: int, total: int
) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """Reserve from 8 workers; SIGKILL the process after `kill_after` acks.

    Returns:
        (acked, unknown): the (account, client_order_id) of reserves acked, and of those
        whose call failed (they may or may not be in the log).
    """
    acked: set[tuple[int, str]] = set()
    unknown: set[tuple[int, str]] = set()
    turns = iter(range(total))

    async def worker() -> None:
        for i in turns:
            account = ACCOUNTS[i % len(ACCOUNTS)]
            try:
                if i % 7 == 0:
                    await deposit(stub, account, "USDT", USDT_UNIT, f"top-up-{i}")
                    continue
                await stub.Reserve(limit_order(account, BUY, f"o-{i}"), timeout=10)
                acked.add((account, f"o-{i}"))
            except grpc.aio.AioRpcError:
                if i % 7:
                    unknown.add((account, f"o-{i}"))
                return
            if len(acked) == kill_after:
                process.signal(signal.SIGKILL)

    await asyncio.gather(*(worker() for _ in range(8)))
    return acked, unknown


async def test_killed_mid_stream_it_recovers_every_acked_request_exactly_once(
    kafka_bootstrap: str, topics: tuple[str, LogTopics], tmp_path: Path
) -> None:
    prefix, names = topics
    async with ubscore(kafka_bootstrap, prefix, tmp_path / "ubscore.log") as (process, channel):
        stub = ubscore_pb2_grpc.UBSCoreStub(channel)
        process.start()
        await until_serving(process, channel)
        for account in ACCOUNTS:
            await deposit(stub, account, "USDT", 1_000 * USDT_UNIT, f"fund-{account}")

        acked, unknown = await drive_until_killed(stub, process, kill_after=250, total=600)
        assert await process.exit_status() == -signal.SIGKILL
        assert len(acked) >= 250

        process.start()
        await until_serving(process, channel)
        bus = KafkaBus(kafka_bootstrap, client_id="recovery-check")
        try:
            rebuilt = await rebuilt_from_the_log(bus, names)
            for account in (0, *ACCOUNTS):
                held = {
                    b.asset: (b.available, b.frozen) for b in rebuilt.balances(AccountId(account))
                }
                assert await balances(stub, account) == held
            logged = new_orders(await commands(bus, names))
            assert all(logged[order] == 1 for order in acked)
            # Retrying what was never answered gives one order each, never a second one.
            for account, client_order_id in sorted(unknown):
                await stub.Reserve(limit_order(account, BUY, client_order_id), timeout=10)
            logged = new_orders(await commands(bus, names))
            assert set(logged) == acked | unknown
            assert set(logged.values()) == {1}
        finally:
            await bus.close()
        process.signal(signal.SIGTERM)
        assert await process.exit_status() == 0
    events = [e["event"] for e in process.events()]
    assert events.count("serving") == 2
    # 250 acks passed the snapshot trigger (100) twice: the restart began from a snapshot.
    assert "restored from snapshot" in events


async def test_sigterm_saves_a_snapshot_and_the_restart_restores_it(
    kafka_bootstrap: str, topics: tuple[str, LogTopics], tmp_path: Path
) -> None:
    prefix, names = topics
    async with ubscore(kafka_bootstrap, prefix, tmp_path / "ubscore.log") as (process, channel):
        stub = ubscore_pb2_grpc.UBSCoreStub(channel)
        process.start()
        await until_serving(process, channel)
        for account in ACCOUNTS:
            await deposit(stub, account, "USDT", 10 * USDT_UNIT, f"fund-{account}")
            await stub.Reserve(limit_order(account, BUY, f"o-{account}"))
        before = {account: await balances(stub, account) for account in ACCOUNTS}

        process.signal(signal.SIGTERM)
        assert await process.exit_status() == 0
        saved = [e for e in process.events() if e["event"] == "snapshot saved"]
        assert [e["trigger"] for e in saved] == ["shutdown"]
        bus = KafkaBus(kafka_bootstrap, client_id="snapshot-check")
        try:
            data = await BusSnapshotStore(bus, names.snapshots).load("ubscore/0")
            logged = await read_all(bus, names.orders)
        finally:
            await bus.close()
        assert data is not None
        offsets = {(o.topic, o.partition): o.offset for o in decode_snapshot(data).offsets}
        # The last record of each partition (a transaction's commit marker follows it).
        last = {record.partition: record.offset for record in logged}
        assert last
        for partition, offset in last.items():
            assert offsets[("ordermesh.orders", partition)] == offset

        process.start()
        await until_serving(process, channel)
        restored = [e for e in process.events() if e["event"] == "restored from snapshot"]
        assert len(restored) == 1
        assert restored[0]["key"] == "ubscore/0"
        recovered = [e for e in process.events() if e["event"] == "recovered"]
        assert recovered[-1]["records"] == 0
        assert {account: await balances(stub, account) for account in ACCOUNTS} == before
        process.signal(signal.SIGTERM)
        assert await process.exit_status() == 0


async def test_without_kafka_it_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    log = tmp_path / "ubscore.log"
    dead = f"127.0.0.1:{free_port()}"
    process = UBSCoreProcess(dead, "", free_port(), log)
    process.start()
    try:
        status = await process.exit_status()
    finally:
        process.stop_if_running()
    assert status == 1
    failures = [e for e in process.events() if e["event"] == "cannot start"]
    assert failures
    assert failures[0]["kafka"] == dead


async def test_a_fail_stop_exits_non_zero_and_the_restart_refuses_the_same_record(
    kafka_bootstrap: str, topics: tuple[str, LogTopics], tmp_path: Path
) -> None:
    prefix, names = topics
    async with ubscore(kafka_bootstrap, prefix, tmp_path / "ubscore.log") as (process, channel):
        process.start()
        await until_serving(process, channel)
        bus = KafkaBus(kafka_bootstrap, client_id="poison")
        try:
            producer = bus.producer()
            await producer.start()
            await producer.send(names.engine, b"\xff not an EngineEvent", key=b"BTC-USDT")
            await producer.stop()
        finally:
            await bus.close()

        assert await process.exit_status() == 1
        stopped = [e for e in process.events() if e["event"] == "stopped serving"]
        assert "does not decode" in stopped[0]["reason"]
        # Never skipped: the next start stops on the same record again.
        process.start()
        assert await process.exit_status() == 1
    assert sum(e["event"] == "stopped serving" for e in process.events()) == 2
