"""Migrations: applied once on an empty database, a no-op again, and refused when changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from settlement.schema import MIGRATIONS_DIR, MigrationError, load_migrations, migrate

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

TABLES = {
    "trades", "orders", "ledger_entries", "candles", "consumer_offsets", "symbol_chains",
    "schema_migrations",
}  # fmt: skip


async def test_migrations_apply_once_and_reapply_as_a_no_op(pg_database: str) -> None:
    connection = await asyncpg.connect(pg_database)
    try:
        versions = [m.version for m in load_migrations()]
        assert await migrate(connection) == versions
        assert await migrate(connection) == []
        tables = {
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert tables == TABLES
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
        assert [(r["version"], r["name"]) for r in rows] == [(1, "initial")]
        assert rows[0]["checksum"] == load_migrations()[0].checksum
        assert await connection.fetchval("SELECT count(*) FROM account_balances") == 0
    finally:
        await connection.close()


async def test_a_changed_migration_is_refused(pg_database: str, tmp_path: Path) -> None:
    shutil.copy(MIGRATIONS_DIR / "0001_initial.sql", tmp_path / "0001_initial.sql")
    connection = await asyncpg.connect(pg_database)
    try:
        await migrate(connection, load_migrations(tmp_path))
        changed = tmp_path / "0001_initial.sql"
        changed.write_text(changed.read_text() + "\n-- an edit after the fact\n")
        with pytest.raises(MigrationError, match=r"0001_initial\.sql changed after it was applied"):
            await migrate(connection, load_migrations(tmp_path))
    finally:
        await connection.close()


async def test_a_database_newer_than_the_build_is_refused(pg_database: str, tmp_path: Path) -> None:
    shutil.copy(MIGRATIONS_DIR / "0001_initial.sql", tmp_path / "0001_initial.sql")
    (tmp_path / "0002_more.sql").write_text("CREATE TABLE more (id int);\n")
    connection = await asyncpg.connect(pg_database)
    try:
        assert await migrate(connection, load_migrations(tmp_path)) == [1, 2]
        with pytest.raises(MigrationError, match="0002_more, which this build does not have"):
            await migrate(connection)
        (tmp_path / "0003_broken.sql").write_text("CREATE TABLE broken (;\n")
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await migrate(connection, load_migrations(tmp_path))
        assert await connection.fetchval("SELECT max(version) FROM schema_migrations") == 2
    finally:
        await connection.close()


async def test_the_ledger_is_append_only(pg_database: str) -> None:
    connection = await asyncpg.connect(pg_database)
    try:
        await migrate(connection)
        await connection.execute(
            "INSERT INTO ledger_entries (account_id, asset, kind, amount, reference, timestamp_ns)"
            " VALUES (1, 'USDT', 1, 5, 'r', 0)"
        )
        for statement in ("UPDATE ledger_entries SET amount = 6", "DELETE FROM ledger_entries",
                          "TRUNCATE ledger_entries"):  # fmt: skip
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await connection.execute(statement)
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute(
                "INSERT INTO ledger_entries (account_id, asset, kind, amount, reference,"
                " timestamp_ns) VALUES (1, 'USDT', 1, 5, 'r', 0)"
            )
    finally:
        await connection.close()
