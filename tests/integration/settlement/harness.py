"""Helpers for the settlement service tests: a running service, publishing, waiting, SQL.

Waits are conditions with deadlines (`eventually`), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc

from ordermesh.bus.base import Bus, TopicSpec
from ordermesh.v1 import settlement_pb2_grpc
from settlement.bootstrap import SettlementService, SettlementSettings, build
from settlement.consumer import SettlementTopics
from settlement.core import fold_orders, plan_batch
from settlement.queries import ledger_problems
from settlement.store import order_from_record
from tests import waiting
from tests.unit.settlement.exchange import MARKETS, Exchange, LogRecord

DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.02


eventually = functools.partial(
    waiting.eventually, seconds=DEADLINE_SECONDS, poll_seconds=POLL_SECONDS
)
"""Wait for a condition with this file's deadline and poll interval."""


def expected_offsets(
    topics: SettlementTopics, records: Iterable[LogRecord]
) -> dict[tuple[str, int], int]:
    """The next offset of every partition the records are in."""
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        ends[(topics.topic(record.source), record.partition)] = record.offset + 1
    return ends


async def create_topics(bus: Bus, topics: SettlementTopics, partitions: int = 2) -> None:
    await bus.create_topics(
        [TopicSpec(name, partitions) for name in (topics.orders, topics.engine, topics.ledger)]
    )


async def publish(bus: Bus, topics: SettlementTopics, records: Iterable[LogRecord]) -> None:
    """Append the records, each to its own partition, in order."""
    producer = bus.producer()
    await producer.start()
    try:
        for record in records:
            await producer.send(
                topics.topic(record.source), record.value, key=record.key,
                partition=record.partition,
            )  # fmt: skip
    finally:
        await producer.stop()


async def publish_raw(
    bus: Bus, topic: str, value: bytes, *, partition: int = 0, key: bytes = b"x"
) -> None:
    producer = bus.producer()
    await producer.start()
    try:
        await producer.send(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


@dataclass
class Running:
    """A started service, its run() task and a gRPC stub on it."""

    service: SettlementService
    task: asyncio.Task[int]
    channel: grpc.aio.Channel
    stub: settlement_pb2_grpc.SettlementAsyncStub
    dsn: str
    topics: SettlementTopics
    clock: list[int] = field(default_factory=list)

    async def settled(
        self, records: Iterable[LogRecord], seconds: float = DEADLINE_SECONDS
    ) -> None:
        """Wait until every record's offset is committed."""
        wanted = expected_offsets(self.topics, records)

        async def probe() -> dict[tuple[str, int], int]:
            if self.task.done():
                raise AssertionError(f"settlement stopped with {self.task.result()}")
            return {k: v for k, v in self.service.consumer.committed.items() if k in wanted}

        await eventually(probe, lambda got: got == wanted, what="settlement", seconds=seconds)

    async def exit_status(self, seconds: float = DEADLINE_SECONDS) -> int:
        return await asyncio.wait_for(asyncio.shield(self.task), seconds)


@contextlib.asynccontextmanager
async def running(
    bus: Bus,
    dsn: str,
    prefix: str,
    *,
    now_ns: int = 0,
    **options: Any,
) -> AsyncIterator[Running]:
    """Build, start and run settlement; stop it (gracefully) on the way out."""
    values: dict[str, Any] = {
        "port": 0, "metrics_port": 0, "topic_prefix": prefix, "partitions": 2,
        "batch_wait_ms": 2, "grace_seconds": 1.0,
    }  # fmt: skip
    values.update(options)
    settings = SettlementSettings(**values)
    clock = [now_ns]
    service = await build(settings, bus, dsn, clock=lambda: clock[0])
    await service.start()
    task = asyncio.create_task(service.run())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    stub = settlement_pb2_grpc.SettlementStub(channel)
    try:
        yield Running(service, task, channel, stub, dsn, settings.topics(), clock)
    finally:
        await channel.close()
        await service.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, DEADLINE_SECONDS)


async def fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        records: list[Any] = await connection.fetch(sql, *args)
        return records
    finally:
        await connection.close()


async def counts(dsn: str) -> dict[str, int]:
    """Rows per table (and the stored offsets and chains, as text)."""
    result: dict[str, Any] = {}
    for table in ("trades", "orders", "ledger_entries", "candles"):
        result[table] = (await fetch(dsn, f"SELECT count(*) AS n FROM {table}"))[0]["n"]  # noqa: S608
    result["offsets"] = sorted(
        tuple(r)
        for r in await fetch(dsn, "SELECT topic, partition, next_offset FROM consumer_offsets")
    )
    result["chains"] = sorted(
        tuple(r)
        for r in await fetch(dsn, "SELECT symbol, partition, sequence, hash FROM symbol_chains")
    )
    return result


async def check_against_the_core(dsn: str, ex: Exchange) -> None:
    """Trades once each, orders and chains as folding the whole log in one go gives."""
    whole = plan_batch(ex.items(), {}, {str(k): v for k, v in MARKETS.markets.items()},
                       set(MARKETS.assets))  # fmt: skip
    trades = await fetch(dsn, "SELECT symbol, trade_id, quantity FROM trades")
    assert sorted(tuple(r) for r in trades) == sorted(
        (t.symbol, t.trade_id, t.quantity) for t in whole.trades
    )
    orders = {r["order_id"]: order_from_record(r) for r in await fetch(dsn, "SELECT * FROM orders")}
    assert orders == fold_orders({}, whole.order_changes)
    chains = await fetch(dsn, "SELECT symbol, sequence, hash FROM symbol_chains")
    assert {r["symbol"]: (r["sequence"], bytes(r["hash"])) for r in chains} == {
        symbol: (point.sequence, point.hash) for symbol, point in whole.chains.items()
    }
    connection = await asyncpg.connect(dsn)
    try:
        assert await ledger_problems(connection) == []
        legs = await connection.fetchval("SELECT count(*) FROM ledger_entries")
    finally:
        await connection.close()
    assert legs == len(whole.ledger)
