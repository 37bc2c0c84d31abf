"""Recovery in one process: snapshots every N records and at shutdown; restore + replay gives
back exactly the state that was left, with or without a snapshot."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest

from ordermesh.bus.base import Bus
from ordermesh.snapshots import BusSnapshotStore
from tests.integration.ubscore.harness import (
    BUY,
    SELL,
    USDT_UNIT,
    NoSnapshots,
    balances,
    deposit,
    limit_order,
    running,
)
from tests.servers.common import free_port
from ubscore.codec import decode_snapshot
from ubscore.metrics import UBSCoreMetrics

pytestmark = pytest.mark.asyncio


def sample(metrics: UBSCoreMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"ordermesh_ubscore_{name}", labels)
    assert value is not None, f"no sample ordermesh_ubscore_{name} {labels}"
    return value


async def drive(stub: Any, rounds: int) -> None:
    """Each round: two deposits and a reservation (three records), over three accounts."""
    for i in range(rounds):
        await deposit(stub, 1 + i % 3, "USDT", 5 * USDT_UNIT, f"usdt-{i}")
        await deposit(stub, 1 + i % 3, "BTC", 10**7, f"btc-{i}")
        side = BUY if i % 2 else SELL
        await stub.Reserve(limit_order(1 + i % 3, side, f"o-{i}"))


async def test_snapshots_every_n_records_and_restarts_to_the_same_state(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix, snapshot_every=10) as first:
        await drive(first.stub, 12)
        metrics = first.service.metrics
        assert sample(metrics, "snapshots_saved_total", trigger="periodic") >= 1
        await first.service.stop()
        assert await first.exit_status() == 0
        left = first.service.writer.core.snapshot()
    assert sample(metrics, "snapshots_saved_total", trigger="shutdown") == 1

    store = BusSnapshotStore(bus, first.topics.snapshots)
    saved = await store.load("ubscore/0")
    await store.close()
    assert saved is not None
    assert decode_snapshot(saved) == left

    async with running(bus, prefix) as second:
        assert sample(second.service.metrics, "restored_from_snapshot") == 1
        assert second.service.writer.core.snapshot() == left
        for account in (1, 2, 3):
            assert await balances(second.stub, account) != {}


async def test_a_replay_from_the_start_gives_the_state_a_snapshot_gives(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix, snapshot_every=1_000_000) as first:
        await drive(first.stub, 6)
        left = first.service.writer.core.snapshot()

    nothing = NoSnapshots()
    async with running(bus, prefix, store=nothing) as second:
        assert sample(second.service.metrics, "restored_from_snapshot") == 0
        assert sample(second.service.metrics, "replayed_records") == 18
        assert second.service.writer.core.snapshot() == left


async def test_metrics_are_served_with_full_names(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix, metrics_port=free_port()) as service:
        await drive(service.stub, 1)
        url = f"http://127.0.0.1:{service.service.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    page = text.decode()
    for name in (
        'ordermesh_ubscore_requests_total{method="reserve",result="accepted"} 1.0',
        'ordermesh_ubscore_produce_seconds_count{topic="orders"} 1.0',
        "ordermesh_ubscore_replay_seconds",
        "ordermesh_ubscore_consumer_lag_records",
        "ordermesh_ubscore_engine_events_applied_total",
    ):
        assert name in page
