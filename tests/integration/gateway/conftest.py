"""Fixtures: the key file a test's gateway reads, and the whole mesh around the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.gateway.harness import Mesh, mesh, write_key_file


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "api_keys.toml")


@pytest_asyncio.fixture
async def running_mesh(pg_database: str, key_file: Path) -> AsyncIterator[Mesh]:
    async with mesh(pg_database, key_file) as started:
        yield started
