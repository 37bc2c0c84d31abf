"""Integration tests against real Kafka and PostgreSQL servers (see `tests.servers`)."""
