"""PostgreSQL for the integration tests: an embedded server, and throwaway databases.

The embedded server is `pgserver` (PostgreSQL 16 binaries shipped as a wheel). It
listens on a Unix socket only, with trust authentication, and lives in a temporary
directory. Tests get isolation by database: `create_database` makes an empty one per
test and `drop_database` removes it, which costs a few milliseconds.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from tests.servers.common import env_override, tail

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DSN_ENV_VARS = ("ORDERMESH_TEST_DATABASE_URL", "DATABASE_URL")


def configured_dsn() -> str | None:
    """Return the DSN of a PostgreSQL chosen by the user, if any."""
    return env_override(*DSN_ENV_VARS)


class EmbeddedPostgres:
    """A private PostgreSQL server in a temporary directory.

    Attributes:
        dsn: URI of the `postgres` database, for asyncpg (Unix socket, no password).
        startup_seconds: How long `start` took.
    """

    def __init__(self) -> None:
        self.dsn = ""
        self.startup_seconds = 0.0
        self._root: Path | None = None
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Create the data directory, start the server and return its DSN.

        Raises:
            RuntimeError: The server did not start; the message has its log.
        """
        started = time.monotonic()
        self._root = Path(tempfile.mkdtemp(prefix="ordermesh-pg-"))
        pgdata = self._root / "pgdata"
        try:
            self._server = _get_server(pgdata)
        except Exception as exc:
            log = tail(pgdata / "log")
            self.stop()
            raise RuntimeError(f"embedded PostgreSQL failed to start: {exc}\n{log}") from exc
        self.dsn = str(self._server.get_uri())
        self.startup_seconds = time.monotonic() - started
        return self.dsn

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call more than once."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _get_server(pgdata: Path) -> PostgresServer:
    """Import pgserver lazily (it warns about XDG_RUNTIME_DIR on import) and start it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 - only when needed

        return get_server(pgdata, cleanup_mode="delete")


def new_database_name() -> str:
    """Return a unique, lower-case database name that needs no quoting."""
    return f"test_{uuid.uuid4().hex[:16]}"


def with_database(dsn: str, database: str) -> str:
    """Return `dsn` pointing at another database on the same server.

    Args:
        dsn: A `postgresql://` URI.
        database: The database name to put in its path.
    """
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database(dsn: str, name: str) -> None:
    """Create an empty database `name` on the server of `dsn`."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(dsn: str, name: str) -> None:
    """Drop database `name`, disconnecting any session a test left open in it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
