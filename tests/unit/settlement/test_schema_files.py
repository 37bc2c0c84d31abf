"""Migration files: named NNNN_name.sql, numbered without gaps, each version once."""

from __future__ import annotations

from pathlib import Path

import pytest

from settlement.schema import MigrationError, load_migrations


def test_the_shipped_migrations_load() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(len(m.checksum) == 64 for m in migrations)


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (["1_bad.sql"], "named NNNN_lower_case_name.sql"),
        (["0001_a.sql", "0003_c.sql"], "migration 0002 is missing before 0003_c.sql"),
        (["0001_a.sql", "0001_b.sql"], "version 0001 is taken"),
    ],
)
def test_misnamed_migration_files_are_refused(tmp_path: Path, files: list[str], words: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=words):
        load_migrations(tmp_path)
