"""pytest fixtures that start real Kafka and PostgreSQL servers on demand.

Registered as a plugin by `tests/conftest.py`. Servers are session-scoped and start
only when a test first requests them; per-test isolation comes from fresh databases
and uniquely named topics. All fixtures are synchronous, so they work with async
tests of any event-loop scope: whatever they do asynchronously runs on a private
loop in a worker thread.

Fixtures:
    postgres_dsn: session; DSN of the server's `postgres` database.
    pg_database: function; DSN of a new empty database, dropped afterwards.
    kafka_bootstrap: session; "127.0.0.1:<port>" of a single-node KRaft broker.
    kafka_topic_factory: function; `factory(partitions=1, *, prefix="test",
        config=None) -> name` creates topics, all deleted afterwards.

A server chosen through the environment (see `tests.servers`) wins over the embedded
one. Where Java, Maven or pgserver cannot work, the tests that need them are
skipped, with what to install; with CI set they fail instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

import pytest

from tests.servers.common import run_async, unavailable
from tests.servers.kafka import (
    KAFKA_VERSION,
    BrokerStartError,
    KafkaBroker,
    KafkaUnavailableError,
    cache_dir,
    configured_bootstrap,
    create_topic,
    delete_topics,
    ensure_jars,
    find_tool,
)
from tests.servers.postgres import (
    EmbeddedPostgres,
    configured_dsn,
    create_database,
    drop_database,
    new_database_name,
    with_database,
)

_NOTES = pytest.StashKey[list[str]]()


def _note(config: pytest.Config, line: str) -> None:
    """Remember a line for the end-of-session summary."""
    config.stash.setdefault(_NOTES, []).append(line)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Report which servers the session started, and how long each took."""
    notes = config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.write_sep("-", "test servers")
        for line in notes:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def postgres_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN (asyncpg URI) of the PostgreSQL server: the user's, or an embedded one."""
    configured = configured_dsn()
    if configured is not None:
        _note(request.config, "PostgreSQL: using the server given in the environment")
        yield configured
        return
    server = _start_postgres()
    _note(request.config, f"PostgreSQL (pgserver): started in {server.startup_seconds:.2f} s")
    try:
        yield server.dsn
    finally:
        server.stop()


def _start_postgres() -> EmbeddedPostgres:
    """Start an embedded server; skip, or fail in CI, when that is impossible."""
    server = EmbeddedPostgres()
    try:
        server.start()
    except RuntimeError as exc:
        raise unavailable(f"PostgreSQL tests need pgserver to start: {exc}") from None
    return server


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """DSN of a new, empty database for one test; dropped (with its sessions) afterwards."""
    name = new_database_name()
    run_async(lambda: create_database(postgres_dsn, name))
    try:
        yield with_database(postgres_dsn, name)
    finally:
        run_async(lambda: drop_database(postgres_dsn, name))


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap servers of Kafka: the user's, or an embedded single-node KRaft broker."""
    configured = configured_bootstrap()
    if configured is not None:
        _note(request.config, f"Kafka: using {configured} given in the environment")
        yield configured
        return
    broker = _start_broker(request.config)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _start_broker(config: pytest.Config) -> KafkaBroker:
    """Fetch the jars if needed and start a broker; fail with its log if it does not start."""
    started = time.monotonic()
    broker = _new_broker()
    jars_seconds = time.monotonic() - started
    try:
        broker.start()
    except BrokerStartError as exc:
        broker.stop()
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    _note(
        config,
        f"Kafka {KAFKA_VERSION} (KRaft) on {broker.bootstrap}: jars ready in {jars_seconds:.2f} s,"
        f" broker started in {broker.startup_seconds:.2f} s",
    )
    return broker


def _new_broker() -> KafkaBroker:
    """A broker ready to start; skip, or fail in CI, without Java, Maven or the jars."""
    try:
        find_tool("java")  # before a download that would be of no use
        return KafkaBroker(ensure_jars(cache_dir()))
    except KafkaUnavailableError as exc:
        raise unavailable(str(exc)) from None


class TopicFactory:
    """Creates uniquely named topics on one cluster and deletes them all on `cleanup`.

    Attributes:
        bootstrap: The cluster's bootstrap servers.
        created: Names of the topics created so far, in order.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.created: list[str] = []

    def __call__(
        self, partitions: int = 1, *, prefix: str = "test", config: Mapping[str, str] | None = None
    ) -> str:
        """Create a topic and return its name once every partition has a leader.

        Args:
            partitions: Number of partitions.
            prefix: Start of the name; a random suffix makes it unique.
            config: Topic configs, e.g. {"cleanup.policy": "compact"}.
        """
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.created.append(name)  # before creating: a half-made topic is cleaned up too
        run_async(lambda: create_topic(self.bootstrap, name, partitions, config))
        return name

    def cleanup(self) -> None:
        """Delete every topic this factory created."""
        names, self.created = self.created, []
        run_async(lambda: delete_topics(self.bootstrap, names))


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """Factory of fresh topics for one test; they are deleted afterwards."""
    factory = TopicFactory(kafka_bootstrap)
    try:
        yield factory
    finally:
        factory.cleanup()
