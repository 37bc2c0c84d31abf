"""Numbered SQL migrations (settlement/migrations/NNNN_name.sql), applied on start.

All pending migrations are applied in version order inside one transaction, under a
transaction-level advisory lock (so instances starting together apply them once), and
each is recorded in `schema_migrations` with the sha256 of its file. A migration that was
changed after it was applied, or one the database has that this build does not, is an
error: the schema and the code would disagree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
"""Where the migration files live (shipped with the package)."""

ADVISORY_LOCK: Final = 0x5E771E_0001
"""pg_advisory_xact_lock key held while migrating ("settle", migrations)."""

_FILE = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and those applied to the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str
    checksum: str
    """sha256 of the file's bytes, hex."""


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, by version: 0001, 0002, ... with no gap.

    Raises:
        MigrationError: a .sql file not named NNNN_name.sql, two files of one version, or
            a gap in the numbering.
    """
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_case_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(f"{path}: version {version:04d} is taken by another file")
        data = path.read_bytes()
        migrations[version] = Migration(
            version, match["name"], data.decode("utf-8"), hashlib.sha256(data).hexdigest()
        )
    ordered = [migrations[v] for v in sorted(migrations)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"{directory}: migration {expected:04d} is missing before "
                f"{migration.version:04d}_{migration.name}.sql"
            )
    return ordered


async def migrate(connection: Any, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations not applied yet; return their versions (empty if none).

    Args:
        connection: an asyncpg connection, not in a transaction.
        migrations: what to apply; the package's migration files when None.

    Raises:
        MigrationError: an applied migration changed, or the database has one this build
            does not know (nothing is applied then).
    """
    wanted = load_migrations() if migrations is None else migrations
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK)
        await connection.execute(_CREATE_TABLE)
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {row["version"]: (row["name"], row["checksum"]) for row in rows}
        _check_applied(applied, wanted)
        done = []
        for migration in wanted:
            if migration.version in applied:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            done.append(migration.version)
    return done


def _check_applied(applied: dict[int, tuple[str, str]], wanted: list[Migration]) -> None:
    known = {migration.version: migration for migration in wanted}
    for version, (name, checksum) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name}, which this build does not "
                "have: it was migrated by a newer build; run that one"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{migration.name}.sql changed after it was applied "
                f"(checksum {checksum[:12]}... in the database, {migration.checksum[:12]}... "
                "on disk); add a new migration instead of editing an applied one"
            )
