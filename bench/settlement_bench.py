"""Settlement's write path on PostgreSQL: rows/s by COPY vs executemany, and end to end.

Three figures, each the best of --repeats runs on a fresh, migrated database:

- trades: --rows trade rows in one transaction, by COPY (copy_records_to_table, what the
  service does), by one INSERT over unnest() arrays, and by executemany of an INSERT;
- orders: --rows order rows upserted (half new, half updates of existing rows), by COPY
  into a temporary table then INSERT ... ON CONFLICT (what the service does), by one
  INSERT ... ON CONFLICT over unnest() arrays, and by executemany;
- end to end: a seeded session through the real matcher core (--commands commands; deposits,
  every order type, cancels), published to an in-memory bus, then settled by the service
  (decode, chain verification, planning, one transaction per batch of --batch-max records):
  records/s and trades/s until every offset is committed.

PostgreSQL is an embedded server (pgserver) unless --dsn names one (a database it may
create others on).

    .venv/bin/python bench/settlement_bench.py [--rows N] [--commands N] [--batch-max N]
        [--repeats R] [--dsn postgresql://...]

Prints a table and writes bench/results/settlement.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repo root must be importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.common import write_result  # noqa: E402 - needs the path above
from ordermesh.bus.base import TopicSpec  # noqa: E402
from ordermesh.bus.memory import MemoryBus  # noqa: E402
from ordermesh.telemetry import configure_logging  # noqa: E402
from settlement.bootstrap import SettlementSettings, build  # noqa: E402
from settlement.schema import migrate  # noqa: E402
from settlement.store import (  # noqa: E402
    MERGE_ORDERS,
    ORDER_COLUMNS,
    STAGE_ORDERS,
    STAGE_TABLE,
    TRADE_COLUMNS,
    UNNEST_ORDERS,
)
from tests.servers.postgres import (  # noqa: E402
    EmbeddedPostgres,
    create_database,
    drop_database,
    with_database,
)
from tests.unit.settlement.exchange import random_session  # noqa: E402


def _placeholders(count: int, types: tuple[str, ...] = ()) -> str:
    """$1, $2, ... (with ::type[] casts for unnest when `types` are given)."""
    if types:
        return ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(types, start=1))
    return ", ".join(f"${i}" for i in range(1, count + 1))


# Statements built once from the column constants; values always travel as parameters.
_TRADES = f"trades ({', '.join(TRADE_COLUMNS)})"
_TRADE_TYPES = ("text",) + ("bigint",) * 6 + ("smallint",) + ("bigint",) * 6
_INSERT_TRADE = f"INSERT INTO {_TRADES} VALUES ({_placeholders(len(TRADE_COLUMNS))})"  # noqa: S608
_UNNEST_TRADES = f"INSERT INTO {_TRADES} SELECT * FROM unnest({_placeholders(0, _TRADE_TYPES)})"  # noqa: S608
_UPDATE_ALL = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COLUMNS[1:])
_ON_CONFLICT = f"ON CONFLICT (order_id) DO UPDATE SET {_UPDATE_ALL}"
_INSERT_ORDER = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) "  # noqa: S608
    f"VALUES ({_placeholders(len(ORDER_COLUMNS))}) {_ON_CONFLICT}"
)


def _trade_rows(count: int, seed: int = 1) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    t0 = 1_700_000_040_000_000_000
    return [
        ("BTC-USDT", n, n, 2 * n, 2 * n + 1, rng.randint(1, 1000), rng.randint(1, 1000),
         rng.choice((1, 2)), rng.randint(1, 10**12), rng.randint(1, 10**8), rng.randint(1, 10**12),
         rng.randint(0, 10**6), rng.randint(0, 10**6), t0 + n * 1_000_000)
        for n in range(1, count + 1)
    ]  # fmt: skip


def _order_rows(count: int, seed: int = 2, *, filled: int = 0) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    return [
        (n, "BTC-USDT", rng.randint(1, 1000), f"c{n}", 1, 1, 1, 3 * 10**10, 10**6, 0, False, 1,
         3 if filled else 2, 0, filled, filled * 300, True, 1_700_000_000 + n, 1_700_000_000 + n)
        for n in range(1, count + 1)
    ]  # fmt: skip


async def _best(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    return min([await run() for _ in range(repeats)])


async def _fresh(admin_dsn: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await create_database(admin_dsn, name)
    dsn = with_database(admin_dsn, name)
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return name, dsn


async def _timed_write(
    admin_dsn: str, prepare: list[tuple[Any, ...]], write: Callable[[Any], Awaitable[None]]
) -> float:
    """Seconds for `write` in one transaction on a fresh database (orders in `prepare` first)."""
    name, dsn = await _fresh(admin_dsn)
    connection = await asyncpg.connect(dsn)
    try:
        if prepare:
            await connection.copy_records_to_table("orders", records=prepare, columns=ORDER_COLUMNS)
        started = time.perf_counter()
        async with connection.transaction():
            await write(connection)
        return time.perf_counter() - started
    finally:
        await connection.close()
        await drop_database(admin_dsn, name)


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)]


async def _bench_trades(admin_dsn: str, rows: int, repeats: int) -> dict[str, Any]:
    records = _trade_rows(rows)
    ways: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "copy": lambda c: c.copy_records_to_table("trades", records=records, columns=TRADE_COLUMNS),
        "unnest": lambda c: c.execute(_UNNEST_TRADES, *_columns(records)),
        "executemany": lambda c: c.executemany(_INSERT_TRADE, records),
    }
    result = {}
    for way, write in ways.items():
        seconds = await _best(repeats, functools.partial(_timed_write, admin_dsn, [], write))
        result[way] = {"seconds": round(seconds, 4), "rows_per_second": round(rows / seconds)}
    return result


async def _bench_orders(admin_dsn: str, rows: int, repeats: int) -> dict[str, Any]:
    existing = _order_rows(rows // 2)
    records = _order_rows(rows, filled=1)  # the first half updates, the rest are new

    async def staged(connection: Any) -> None:  # what the service does
        await connection.execute(STAGE_ORDERS)
        await connection.copy_records_to_table(STAGE_TABLE, records=records, columns=ORDER_COLUMNS)
        await connection.execute(MERGE_ORDERS)

    ways: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "copy_then_upsert": staged,
        "unnest_upsert": lambda c: c.execute(UNNEST_ORDERS, *_columns(records)),
        "executemany_upsert": lambda c: c.executemany(_INSERT_ORDER, records),
    }
    result = {}
    for way, write in ways.items():
        seconds = await _best(repeats, functools.partial(_timed_write, admin_dsn, existing, write))
        result[way] = {"seconds": round(seconds, 4), "rows_per_second": round(rows / seconds)}
    return result


async def _bench_pipeline(admin_dsn: str, commands: int, batch_max: int) -> dict[str, Any]:
    exchange = random_session(7, commands)
    trades = sum(1 for e in exchange.engine_events() if type(e.body).__name__ == "TradeExecuted")
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await create_database(admin_dsn, name)
    bus = MemoryBus()
    settings = SettlementSettings(port=0, metrics_port=0, partitions=2, batch_max=batch_max,
                                  batch_wait_ms=0)  # fmt: skip
    topics = settings.topics()
    await bus.create_topics(
        [TopicSpec(t, 2) for t in (topics.orders, topics.engine, topics.ledger)]
    )
    producer = bus.producer()
    await producer.start()
    for record in exchange.records:
        await producer.send(topics.topic(record.source), record.value, key=record.key,
                            partition=record.partition)  # fmt: skip
    service = await build(settings, bus, with_database(admin_dsn, name))
    await service.start()
    wanted: dict[tuple[str, int], int] = {}
    for record in exchange.records:
        wanted[(topics.topic(record.source), record.partition)] = record.offset + 1
    started = time.perf_counter()
    while service.consumer.committed != wanted:
        await service.consumer.step()
    seconds = time.perf_counter() - started
    batches = service.metrics.batches._value.get()
    await service.stop()
    await drop_database(admin_dsn, name)
    return {
        "records": len(exchange.records),
        "trades": trades,
        "batch_max": batch_max,
        "batches": int(batches),
        "seconds": round(seconds, 3),
        "records_per_second": round(len(exchange.records) / seconds),
        "trades_per_second": round(trades / seconds),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    admin_dsn = args.dsn
    if admin_dsn is None:
        server = EmbeddedPostgres()
        admin_dsn = server.start()
    try:
        connection = await asyncpg.connect(admin_dsn)
        version = await connection.fetchval("SHOW server_version")
        await connection.close()
        return {
            "postgres": version,
            "rows": args.rows,
            "repeats": args.repeats,
            "trades_insert": await _bench_trades(admin_dsn, args.rows, args.repeats),
            "orders_upsert": await _bench_orders(admin_dsn, args.rows, args.repeats),
            "pipeline": await _bench_pipeline(admin_dsn, args.commands, args.batch_max),
        }
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    """Measure, print the table, write bench/results/settlement.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per write (default 20000)")
    parser.add_argument("--commands", type=int, default=6_000, help="commands end to end")
    parser.add_argument("--batch-max", type=int, default=5_000, help="records per batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--dsn", default=None, help="a PostgreSQL to use instead of pgserver")
    args = parser.parse_args()
    configure_logging("warning", "console")
    payload = asyncio.run(_run(args))
    print(f"PostgreSQL {payload['postgres']}, {args.rows} rows per write, best of {args.repeats}")
    for table in ("trades_insert", "orders_upsert"):
        for way, figure in payload[table].items():
            print(f"  {table:<14} {way:<20} {figure['rows_per_second']:>10,} rows/s "
                  f"({figure['seconds']:.3f} s)")  # fmt: skip
    pipe = payload["pipeline"]
    print(f"  end to end: {pipe['records']:,} records ({pipe['trades']:,} trades) in "
          f"{pipe['batches']} batches of <= {pipe['batch_max']}: {pipe['records_per_second']:,} "
          f"records/s, {pipe['trades_per_second']:,} trades/s")  # fmt: skip
    path = write_result("settlement", payload)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
