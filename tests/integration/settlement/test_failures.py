"""Fail-stop: a broken chain, an undecodable record, an inconsistent log stop settlement.

Nothing of the offending batch is written, the stored chain is never reset, and a restart
meets the same record and stops again. Runs on the in-memory bus, where a publish of a few
records lands in one batch.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ordermesh import codec
from ordermesh.bus.base import Bus
from ordermesh.bus.memory import MemoryBus
from ordermesh.events import EngineEvent
from ordermesh.runtime import EXIT_FATAL
from settlement.core import Source
from tests.integration.settlement.harness import (
    check_against_the_core,
    counts,
    create_topics,
    publish,
    publish_raw,
    running,
)
from tests.unit.settlement.exchange import BUY, SELL, Exchange, LogRecord, atoms, random_session

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PRICE = atoms("30000", "USDT")
LOT = atoms("0.01", "BTC")


def opened() -> tuple[Exchange, list[LogRecord]]:
    """An exchange with a deposit, a resting sell and a trade; and those records."""
    ex = Exchange()
    ex.fund(1, "BTC", atoms("1", "BTC"), "open-1")
    ex.order(1, SELL, PRICE, 3 * LOT)
    ex.order(2, BUY, PRICE, LOT)
    return ex, list(ex.records)


def more(ex: Exchange) -> list[LogRecord]:
    """A deposit, then two buys that trade with the resting sell (three events each)."""
    start = len(ex.records)
    ex.fund(2, "USDT", atoms("500", "USDT"), "later-2")
    ex.order(2, BUY, PRICE, LOT)
    ex.order(2, BUY, PRICE, LOT)
    return ex.records[start:]


def engine(records: list[LogRecord]) -> list[LogRecord]:
    return [r for r in records if r.source is Source.ENGINE]


def with_event(record: LogRecord, event: EngineEvent) -> LogRecord:
    return replace(record, value=codec.encode_engine_event(event), decoded=event)


async def stops_and_writes_nothing(
    bus: MemoryBus, dsn: str, prefix: str, first: list[LogRecord], bad: list[LogRecord]
) -> None:
    async with running(bus, dsn, prefix) as run:
        await create_topics(bus, run.topics)
        await publish(bus, run.topics, first)
        await run.settled(first)
        before = await counts(dsn)
        await publish(bus, run.topics, bad)
        assert await run.exit_status() == EXIT_FATAL
    assert await counts(dsn) == before  # not even the deposit that came with it
    async with running(bus, dsn, prefix) as again:  # never a reset: it stops again
        assert await again.exit_status() == EXIT_FATAL
    assert await counts(dsn) == before


async def test_a_sequence_gap_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex, first = opened()
    later = more(ex)
    lost = engine(later)[1]  # the first buy's trade
    await stops_and_writes_nothing(
        memory_bus, pg_database, prefix, first, [r for r in later if r is not lost]
    )


async def test_a_gap_stops_it_on_either_bus(bus: Bus, pg_database: str, prefix: str) -> None:
    ex, first = opened()
    buy = engine(more(ex))
    async with running(bus, pg_database, prefix) as run:
        await create_topics(bus, run.topics)
        await publish(bus, run.topics, first)
        await run.settled(first)
        before = await counts(pg_database)
        await publish(bus, run.topics, [r for r in buy if r is not buy[1]])
        assert await run.exit_status() == EXIT_FATAL
    assert await counts(pg_database) == before


async def test_a_repeated_event_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex, first = opened()
    later = more(ex)
    again = engine(first)[-1]
    await stops_and_writes_nothing(
        memory_bus, pg_database, prefix, first, [later[0], replace(again), *later[1:]]
    )


async def test_a_tampered_hash_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex, first = opened()
    later = more(ex)
    target = engine(later)[0]
    event = target.decoded
    assert isinstance(event, EngineEvent)
    forged = with_event(target, replace(event, hash=bytes(range(32))))
    await stops_and_writes_nothing(
        memory_bus, pg_database, prefix, first, [forged if r is target else r for r in later]
    )


async def test_a_changed_trade_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex, first = opened()
    later = more(ex)
    target = engine(later)[1]
    event = target.decoded
    assert isinstance(event, EngineEvent)
    richer = replace(event, body=replace(event.body, quantity=event.body.quantity * 2))  # type: ignore[arg-type, union-attr]
    await stops_and_writes_nothing(
        memory_bus, pg_database, prefix, first, [with_event(target, richer) if r is target else r
                                                 for r in later]
    )  # fmt: skip


@pytest.mark.parametrize("source", [Source.ENGINE, Source.LEDGER, Source.ORDERS])
async def test_a_record_that_does_not_decode_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str, source: Source
) -> None:
    ex, first = opened()
    later = more(ex)
    target = next(r for r in later if r.source is source)
    garbage = replace(target, value=b"\xff\xff\xff not protobuf")
    await stops_and_writes_nothing(
        memory_bus, pg_database, prefix, first, [garbage if r is target else r for r in later]
    )


async def test_an_empty_engine_record_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    _, first = opened()
    async with running(memory_bus, pg_database, prefix) as run:
        await create_topics(memory_bus, run.topics)
        await publish(memory_bus, run.topics, first)
        await run.settled(first)
        await publish_raw(memory_bus, run.topics.engine, b"", partition=0)
        assert await run.exit_status() == EXIT_FATAL


async def test_an_order_id_accepted_twice_stops_it(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex, first = opened()
    start = len(ex.records)
    taker = 2  # the opening buy, long filled: the matcher takes a reused id as a new order
    ex.order(3, SELL, PRICE + 10_000, LOT, order_id=taker)
    await stops_and_writes_nothing(memory_bus, pg_database, prefix, first, ex.records[start:])


async def test_a_restart_resumes_exactly_where_it_stopped(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex = random_session(11, 300)
    half = len(ex.records) // 2
    async with running(memory_bus, pg_database, prefix, batch_max=50) as run:
        await create_topics(memory_bus, run.topics)
        await publish(memory_bus, run.topics, ex.records[:half])
        await run.settled(ex.records[:half])
    async with running(memory_bus, pg_database, prefix, batch_max=50) as run:
        await publish(memory_bus, run.topics, ex.records[half:])
        await run.settled(ex.records)
    await check_against_the_core(pg_database, ex)


async def test_batches_cut_inside_commands_settle_the_same(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex = random_session(5, 200)
    async with running(memory_bus, pg_database, prefix, batch_max=3, batch_wait_ms=0) as run:
        await create_topics(memory_bus, run.topics)
        await publish(memory_bus, run.topics, ex.records)
        await run.settled(ex.records)
        assert run.service.metrics.batches._value.get() > len(ex.records) / 5  # many, small
    await check_against_the_core(pg_database, ex)
