"""The bus contract, bound to the in-memory bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ordermesh.bus.base import TopicSpec
from ordermesh.bus.memory import MemoryBus
from tests.contract.bus_contract import BusContract, MakeTopic, unique


class TestMemoryBus(BusContract):
    @pytest_asyncio.fixture
    async def bus(self) -> AsyncIterator[MemoryBus]:
        bus = MemoryBus()
        yield bus
        await bus.close()

    @pytest.fixture
    def make_topic(self, bus: MemoryBus) -> MakeTopic:
        async def make(partitions: int) -> str:
            name = unique("topic")
            await bus.create_topics([TopicSpec(name, partitions)])
            return name

        return make

    @pytest.fixture
    def fresh_topic_name(self) -> str:
        return unique("topic")
