"""The bus contract, bound to a real Kafka broker (KRaft, started by tests.servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ordermesh.bus.kafka import KafkaBus
from tests.contract.bus_contract import BusContract, MakeTopic, unique
from tests.servers.common import run_async
from tests.servers.fixtures import TopicFactory
from tests.servers.kafka import delete_topics

pytestmark = pytest.mark.integration


class TestKafkaBus(BusContract):
    quiet_ms = 500

    @pytest_asyncio.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
        # Frequent heartbeats: a member notices a rebalance within 100 ms.
        bus = KafkaBus(
            kafka_bootstrap,
            client_id="contract",
            session_timeout_ms=6_000,
            heartbeat_interval_ms=100,
            delivery_timeout_ms=20_000,
        )
        yield bus
        await bus.close()

    @pytest.fixture
    def make_topic(self, kafka_topic_factory: TopicFactory) -> MakeTopic:
        async def make(partitions: int) -> str:
            # The factory blocks while it waits for leaders: keep the test's loop running.
            return await asyncio.to_thread(kafka_topic_factory, partitions, prefix="contract")

        return make

    @pytest.fixture
    def fresh_topic_name(self, kafka_bootstrap: str) -> Iterator[str]:
        name = unique("contract-fresh")
        yield name
        run_async(lambda: delete_topics(kafka_bootstrap, [name]))
