"""Fail if a service core imports I/O, async, protobuf, the clock or randomness (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "ubscore", "matcher", "settlement")
FORBIDDEN = (
    "asyncio",
    "grpc",
    "aiokafka",
    "asyncpg",
    "ordermesh.v1",
    "google.protobuf",
    "time",
    "datetime",
    "random",
    "secrets",
    "socket",
    "threading",
    "os",
    "uuid",
)


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def violations(path: Path) -> list[str]:
    """Every forbidden import in one file, as "path:line: message"."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif node.module and node.level == 0:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            modules = []
        for module in modules:
            if _forbidden(module):
                rel = path.relative_to(ROOT)
                found.append(f"{rel}:{node.lineno}: a core must not import {module}")
    return found


def main() -> int:
    """Check every */core/**/*.py; print what is wrong and exit 1 if anything is."""
    files = sorted(p for service in SERVICES for p in (ROOT / service).glob("core/**/*.py"))
    problems = [problem for path in files for problem in violations(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"core purity: {len(files)} files checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
