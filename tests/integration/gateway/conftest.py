"""Fixtures: the key file a test's gateway reads, and the whole mesh around the gateway.

`running_mesh` is the mesh on a MemoryBus. `mesh_on_bus` runs a test twice: on a MemoryBus,
and on a KafkaBus against the session's broker (marked `integration`), with a topic prefix of
its own; its topics are deleted afterwards. PostgreSQL is real in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.gateway.harness import Mesh, mesh, new_prefix, write_key_file
from tests.integration.matcher.conftest import kafka_bus
from tests.servers.kafka import delete_topics
from ubscore.lifecycle import LogTopics


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "api_keys.toml")


@pytest_asyncio.fixture
async def running_mesh(pg_database: str, key_file: Path) -> AsyncIterator[Mesh]:
    async with mesh(pg_database, key_file) as started:
        yield started


@pytest_asyncio.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def mesh_on_bus(
    request: pytest.FixtureRequest, pg_database: str, key_file: Path
) -> AsyncIterator[Mesh]:
    if request.param == "memory":
        async with mesh(pg_database, key_file) as started:
            yield started
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    prefix = new_prefix()
    bus = kafka_bus(bootstrap)
    try:
        async with mesh(pg_database, key_file, bus=bus, prefix=prefix) as started:
            yield started
    finally:
        await bus.close()
        names = LogTopics.with_prefix(prefix)
        await delete_topics(bootstrap, [names.orders, names.ledger, names.engine, names.snapshots])
