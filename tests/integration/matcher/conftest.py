"""Fixtures: the bus each test runs on (in-memory, and real Kafka), a unique prefix, markets.

A test that takes `bus` runs twice: on a MemoryBus, and on a KafkaBus against the session's
broker (marked `integration`). Each test gets its own topic prefix, consumer group and
transactional ids, so nothing is shared between tests; on Kafka its topics are deleted
afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from ordermesh.bus import topics
from ordermesh.bus.base import Bus
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from ordermesh.snapshots import SNAPSHOTS
from tests.integration.matcher.harness import write_markets
from tests.servers.common import run_async
from tests.servers.kafka import delete_topics


@pytest.fixture
def prefix() -> str:
    return f"m{uuid.uuid4().hex[:10]}."


@pytest.fixture
def markets_file(tmp_path: Path) -> Path:
    return write_markets(tmp_path)


def kafka_bus(bootstrap: str) -> KafkaBus:
    """A Kafka bus that notices rebalances fast (frequent heartbeats, short sessions)."""
    return KafkaBus(
        bootstrap,
        client_id="matcher-tests",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=100,
        delivery_timeout_ms=20_000,
    )


@pytest.fixture
def kafka_cleanup(kafka_bootstrap: str, prefix: str) -> Iterator[None]:
    yield
    names = [prefix + topics.ORDERS, prefix + topics.ENGINE, prefix + SNAPSHOTS]
    run_async(lambda: delete_topics(kafka_bootstrap, names))


@pytest_asyncio.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    request.getfixturevalue("kafka_cleanup")
    kafka = kafka_bus(request.getfixturevalue("kafka_bootstrap"))
    try:
        yield kafka
    finally:
        await kafka.close()
