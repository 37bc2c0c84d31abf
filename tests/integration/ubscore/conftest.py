"""Fixtures: the bus each test runs on (in-memory, and real Kafka), and a unique topic prefix.

A test that takes `bus` runs twice: on a MemoryBus, and on a KafkaBus against the session's
broker (marked `integration`). Each test gets its own topic prefix, so its topics are fresh;
on Kafka they are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ordermesh.bus.base import Bus
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from tests.servers.common import run_async
from tests.servers.kafka import delete_topics
from ubscore.lifecycle import LogTopics


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest_asyncio.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield MemoryBus()
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    kafka = KafkaBus(bootstrap, client_id="ubscore-tests", delivery_timeout_ms=20_000)
    try:
        yield kafka
    finally:
        await kafka.close()
        topics = LogTopics.with_prefix(prefix)
        names = [topics.orders, topics.ledger, topics.engine, topics.snapshots]
        run_async(lambda: delete_topics(bootstrap, names))
