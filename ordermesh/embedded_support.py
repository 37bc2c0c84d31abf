"""What `ordermesh up` stands on: the embedded PostgreSQL, the API key file, one metrics port.

Kept apart from `ordermesh.embedded` (the start/stop sequence) so each reads on its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

from ordermesh.metrics import ServiceMetrics
from settlement.bootstrap import StartError
from settlement.schema import MigrationError

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DATABASE: Final = "ordermesh"
"""The database settlement uses on the embedded PostgreSQL."""
_KEY_BYTES: Final = 24


class StartFailure(Exception):
    """`ordermesh up` cannot start: what failed and what to do about it."""


def start_failure(name: str, error: Exception, flag: str, port: int) -> StartFailure:
    """`error` from starting service `name`, as a message a person can act on."""
    text = str(error).split("; set GRPC_VERBOSITY")[0]
    if isinstance(error, RuntimeError | OSError) and "bind" in text.lower():
        return StartFailure(
            f"{name} cannot listen on port {port} ({text}); is another ordermesh running?"
            f" Choose another port with --{flag}"
        )
    if isinstance(error, StartError | MigrationError | asyncpg.PostgresError):
        return StartFailure(f"{name} cannot use PostgreSQL: {text}")
    return StartFailure(f"{name} cannot start: {text or repr(error)}")


class EmbeddedPostgres:
    """PostgreSQL (pgserver) with its data in `directory`; runs as `pgserver` when root."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._server: PostgresServer | None = None

    async def start(self) -> str:
        """Initialise (first time) and start the server; return the DSN of DATABASE.

        Raises:
            StartFailure: the server did not start (the message ends with its log).
        """
        try:
            self._server = await asyncio.to_thread(_get_server, self.directory)
        except Exception as e:
            raise StartFailure(
                f"the embedded PostgreSQL did not start: {e}\n{_tail(self.directory / 'log')}"
            ) from e
        dsn = str(self._server.get_uri())
        await _ensure_database(dsn, DATABASE)
        return urlunsplit(urlsplit(dsn)._replace(path=f"/{DATABASE}"))

    async def stop(self) -> None:
        """Stop the server (the data stays in the directory)."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)


def _get_server(directory: Path) -> PostgresServer:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # pgserver warns about XDG_RUNTIME_DIR on import; nothing to act on here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 - slow import, only here

        return get_server(directory, cleanup_mode="stop")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _ensure_database(dsn: str, name: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One entry of the gateway's key file, as `up` writes and prints it."""

    name: str
    key: str
    role: str
    account_id: int | None


def _demo_keys() -> list[ApiKey]:
    """Two traders (so one can trade with the other) and an admin; no account is funded."""

    def new() -> str:
        return secrets.token_urlsafe(_KEY_BYTES)

    return [
        ApiKey("demo-trader-1", new(), "trader", 1),
        ApiKey("demo-trader-2", new(), "trader", 2),
        ApiKey("admin", new(), "admin", None),
    ]


def _toml(keys: Iterable[ApiKey]) -> str:
    lines = [
        "# API keys of the mesh `ordermesh up` runs; the gateway reads them. Keep this file",
        "# private. Delete it for new keys at the next start; add entries for more accounts.",
    ]
    for key in keys:
        lines += ["", "[[keys]]", f'name = "{key.name}"', f'key = "{key.key}"']
        if key.account_id is not None:
            lines.append(f"account_id = {key.account_id}")
        lines.append(f'role = "{key.role}"')
    return "\n".join(lines) + "\n"


def api_keys(path: Path) -> list[ApiKey]:
    """The keys in `path`, written first (mode 0600) with new demo keys if it is missing.

    Entries that hold only a key's digest are not listed: their key cannot be shown.

    Raises:
        StartFailure: the file exists and cannot be read as a key file.
    """
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(_toml(_demo_keys()))
    try:
        entries = tomllib.loads(path.read_text()).get("keys", [])
        return [
            ApiKey(
                str(e.get("name", "")), e["key"], str(e.get("role", "trader")), e.get("account_id")
            )
            for e in entries
            if "key" in e
        ]
    except (OSError, tomllib.TOMLDecodeError, AttributeError, TypeError) as e:
        raise StartFailure(f"cannot read the API keys in {path}: {e}") from e


class _Union:
    """A collector that yields what each registry collects."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            yield from registry.collect()


class CombinedMetrics(ServiceMetrics):
    """One /metrics for the process: every service's registry, plus the process metrics."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        super().__init__(CollectorRegistry(auto_describe=False))
        self.registry.register(_Union([*registries, REGISTRY]))
