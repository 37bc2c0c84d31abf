"""Fixtures: the bus each test runs on (in-memory, and real Kafka) and a unique topic prefix.

A test that takes `bus` runs twice: on a MemoryBus, and on a KafkaBus against the session's
broker (marked `integration`, as every test here is: they all need PostgreSQL). Each test
gets its own topic prefix; on Kafka its topics are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ordermesh.bus.base import Bus
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from settlement.consumer import SettlementTopics
from tests.servers.common import run_async
from tests.servers.kafka import delete_topics


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:10]}."


@pytest_asyncio.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    kafka = KafkaBus(bootstrap, client_id="settlement-tests", delivery_timeout_ms=20_000)
    try:
        yield kafka
    finally:
        await kafka.close()
        topics = SettlementTopics.with_prefix(prefix)
        names = [topics.orders, topics.engine, topics.ledger]
        run_async(lambda: delete_topics(bootstrap, names))


@pytest.fixture
def memory_bus() -> MemoryBus:
    return MemoryBus()
