"""`ordermesh up --kafka HOST:PORT --postgres DSN`: the same mesh on external servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ordermesh.v1 import common_pb2 as common
from tests.e2e.mesh_process import Up, all_serving, mesh_ports
from tests.e2e.test_up import AFTER_FIRST_TRADE, Client, settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(240)]


class ExternalUp(Up):
    """`ordermesh up` on a shared broker: topics of its own (a fresh prefix), so no test
    sees another's records."""

    def __init__(self, data_dir: Path, ports: dict[str, int], kafka: str, dsn: str) -> None:
        super().__init__(data_dir, ports)
        self.prefix = f"up-{uuid.uuid4().hex[:12]}."
        self.external = [f"--kafka={kafka}", f"--postgres={dsn}", f"--topic-prefix={self.prefix}"]

    def argv(self) -> list[str]:
        return [*super().argv(), *self.external]


@pytest_asyncio.fixture
async def external(
    tmp_path: Path, kafka_bootstrap: str, pg_database: str
) -> AsyncIterator[ExternalUp]:
    process = ExternalUp(tmp_path / "data", mesh_ports(), kafka_bootstrap, pg_database)
    try:
        yield process
    finally:
        await process.kill()


@pytest.mark.asyncio
async def test_up_on_kafka_and_postgres_trades_and_stops(external: ExternalUp) -> None:
    await external.start()
    await all_serving(external)
    assert any("Kafka at" in line for line in external.lines)
    assert not (external.data_dir / "postgres").exists()
    assert not (external.data_dir / "log").exists()
    keys = external.keys()
    async with grpc.aio.insecure_channel(external.gateway) as channel:
        admin = Client(channel, keys["admin"])
        seller = Client(channel, keys["demo-trader-1"])
        buyer = Client(channel, keys["demo-trader-2"])
        await admin.deposit(1, "BTC", "1", "fund-seller")
        await admin.deposit(2, "USDT", "100000", "fund-buyer")
        await seller.place(common.SIDE_SELL, "0.5", "30000", "sell-1")
        taking = await buyer.place(common.SIDE_BUY, "0.5", "30000", "buy-1")
        assert taking.status == common.ORDER_STATUS_FILLED
        await settled({"seller": seller, "buyer": buyer}, AFTER_FIRST_TRADE)
    assert await external.stop() == 0
