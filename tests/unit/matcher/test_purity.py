"""The matcher core does no I/O, reads no clock and draws no random numbers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "matcher" / "core"
FORBIDDEN = {"asyncio", "grpc", "aiokafka", "asyncpg", "time", "datetime", "random", "secrets",
             "uuid", "os", "socket", "threading"}  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(path: Path) -> None:
    imported = _imports(path)

    assert not {name for name in imported if name.split(".")[0] in FORBIDDEN}
    assert not {name for name in imported if name.startswith("ordermesh.v1")}
