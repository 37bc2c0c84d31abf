"""Fixtures: the one bus both services share (in-memory, or real Kafka), and a unique prefix.

A test that takes `bus` runs twice: with ubscore and the matcher on one MemoryBus, and on one
KafkaBus against the session's broker (marked `integration`). Each test has its own topic
prefix, consumer group and transactional ids; on Kafka its topics are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ordermesh.bus.base import Bus
from ordermesh.bus.memory import MemoryBus
from tests.integration.matcher.conftest import kafka_bus
from tests.servers.common import run_async
from tests.servers.kafka import delete_topics
from ubscore.lifecycle import LogTopics


@pytest.fixture
def prefix() -> str:
    return f"x{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_cleanup(kafka_bootstrap: str, prefix: str) -> Iterator[None]:
    yield
    topics = LogTopics.with_prefix(prefix)
    names = [topics.orders, topics.ledger, topics.engine, topics.snapshots]
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
