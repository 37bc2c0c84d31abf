"""PostgreSQL through asyncpg: migrations, COPY, exact sums, rollback, per-test databases."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE trades (
            trade_id       bigint PRIMARY KEY,
            symbol         text   NOT NULL,
            price          bigint NOT NULL CHECK (price > 0),
            quantity       bigint NOT NULL CHECK (quantity > 0),
            quote_quantity numeric(38, 0) NOT NULL
        )
        """,
    ),
    (2, "CREATE INDEX trades_symbol ON trades (symbol, trade_id)"),
)

TRADE_COLUMNS = ("trade_id", "symbol", "price", "quantity", "quote_quantity")


@dataclass(frozen=True)
class Trade:
    trade_id: int
    symbol: str
    price: int
    quantity: int

    @property
    def quote_quantity(self) -> int:
        # Exceeds int64 for the largest values below: PostgreSQL must sum it as numeric.
        return self.price * self.quantity

    def record(self) -> tuple[int, str, int, int, Decimal]:
        return (self.trade_id, self.symbol, self.price, self.quantity, Decimal(self.quote_quantity))


def make_trades(count: int, seed: int = 7) -> list[Trade]:
    rng = random.Random(seed)
    symbols = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    return [
        Trade(
            trade_id=i + 1,
            symbol=rng.choice(symbols),
            price=rng.randint(1, 2**62),
            quantity=rng.randint(1, 10**12),
        )
        for i in range(count)
    ]


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations not applied yet, each in its own transaction; return their ids."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for version, sql in MIGRATIONS:
        if version in done:
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        applied.append(version)
    return applied


async def test_migration_copy_and_exact_sums(pg_database: str) -> None:
    trades = make_trades(5000)
    conn = await asyncpg.connect(pg_database)
    try:
        assert await migrate(conn) == [1, 2]
        assert await migrate(conn) == []  # idempotent

        copied = await conn.copy_records_to_table(
            "trades", records=[t.record() for t in trades], columns=TRADE_COLUMNS
        )
        assert copied == "COPY 5000"

        row = await conn.fetchrow(
            "SELECT count(*) AS n, sum(quantity) AS qty, sum(quote_quantity) AS quote,"
            " sum(price::numeric * quantity) AS recomputed FROM trades"
        )
        assert row["n"] == len(trades)
        assert row["qty"] == sum(t.quantity for t in trades)
        assert row["quote"] == row["recomputed"] == sum(t.quote_quantity for t in trades)

        per_symbol = await conn.fetch(
            "SELECT symbol, sum(quantity) AS qty FROM trades GROUP BY symbol ORDER BY symbol"
        )
        expected: dict[str, int] = {}
        for t in trades:
            expected[t.symbol] = expected.get(t.symbol, 0) + t.quantity
        assert {r["symbol"]: int(r["qty"]) for r in per_symbol} == expected

        rows = await conn.fetch(
            "SELECT trade_id, symbol, price, quantity, quote_quantity FROM trades ORDER BY trade_id"
        )
        assert [tuple(r) for r in rows] == [t.record() for t in trades]
    finally:
        await conn.close()


class DeliberateError(Exception):
    pass


async def write_then_fail(conn: asyncpg.Connection) -> None:
    """Create a table and COPY rows in one transaction, then fail inside it."""
    async with conn.transaction():
        await conn.execute("CREATE TABLE scratch (id int)")
        await conn.copy_records_to_table(
            "trades", records=[t.record() for t in make_trades(300)], columns=TRADE_COLUMNS
        )
        assert await conn.fetchval("SELECT count(*) FROM trades") == 300
        raise DeliberateError


async def test_rollback_leaves_nothing_behind(pg_database: str) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        await migrate(conn)
        with pytest.raises(DeliberateError):
            await write_then_fail(conn)

        assert await conn.fetchval("SELECT count(*) FROM trades") == 0
        assert await conn.fetchval("SELECT to_regclass('scratch')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        await conn.close()


async def test_each_test_gets_a_fresh_empty_database(pg_database: str, postgres_dsn: str) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        name = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    assert name.startswith("test_")
    assert tables == 0

    admin = await asyncpg.connect(postgres_dsn)
    try:
        found = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    assert found == 1
