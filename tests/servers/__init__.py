"""Real servers for the integration tests: Apache Kafka (KRaft) and PostgreSQL.

Each server runs as a child process of the pytest session, bound to the loopback
interface or a Unix socket, in a temporary directory removed on teardown. The pytest
fixtures that start them on demand live in `tests.servers.fixtures`; the root
`tests/conftest.py` registers them as a plugin.

Environment:
    ORDERMESH_TEST_DATABASE_URL / DATABASE_URL: use this PostgreSQL instead of an
        embedded one.
    ORDERMESH_TEST_KAFKA / KAFKA_BOOTSTRAP_SERVERS: use this Kafka instead of an
        embedded broker.
    ORDERMESH_CACHE: where the Kafka jars are kept between runs
        (default ~/.cache/ordermesh).
    CI: when set, a server that cannot be started fails the tests instead of
        skipping them.
"""
