"""The matcher's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import Counter, Gauge, Histogram

from ordermesh.metrics import ServiceMetrics

_TRANSACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class MatcherMetrics(ServiceMetrics):
    """The service's counters, gauges and histograms."""

    join_seconds: ClassVar[float | None] = 5.0

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.commands_applied = Counter(
            "ordermesh_matcher_commands_applied",
            "ordermesh.orders commands applied to a book, by symbol and phase (live, replay)",
            ["symbol", "phase"],
            registry=registry,
        )
        self.events_emitted = Counter(
            "ordermesh_matcher_events_emitted",
            "Engine events committed to ordermesh.engine, by symbol",
            ["symbol"],
            registry=registry,
        )
        self.transaction_seconds = Histogram(
            "ordermesh_matcher_transaction_seconds",
            "One partition's batch: from beginning the transaction until its commit returned",
            buckets=_TRANSACTION_BUCKETS,
            registry=registry,
        )
        self.book_levels = Gauge(
            "ordermesh_matcher_book_levels",
            "Price levels on one side of a book this instance owns, after its last batch",
            ["symbol", "side"],
            registry=registry,
        )
        self.book_orders = Gauge(
            "ordermesh_matcher_book_orders",
            "Resting orders of a book this instance owns, after its last batch",
            ["symbol"],
            registry=registry,
        )
        self.rebalances = Counter(
            "ordermesh_matcher_rebalances",
            "Consumer group rebalances seen, by event (revoked, assigned)",
            ["event"],
            registry=registry,
        )
        self.owned_partitions = Gauge(
            "ordermesh_matcher_owned_partitions",
            "ordermesh.orders partitions this instance owns",
            registry=registry,
        )
        self.snapshots_saved = Counter(
            "ordermesh_matcher_snapshots_saved",
            "Book snapshots saved inside a transaction, by symbol",
            ["symbol"],
            registry=registry,
        )
        self.snapshots_restored = Counter(
            "ordermesh_matcher_snapshots_restored",
            "Books restored from a snapshot on taking a partition over, by symbol",
            ["symbol"],
            registry=registry,
        )
        self.recovery_seconds = Gauge(
            "ordermesh_matcher_recovery_seconds",
            "Duration of the last recovery of a partition: take-over to live",
            ["partition"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "ordermesh_matcher_consumer_lag_records",
            "ordermesh.orders records of an owned partition not yet read, at the last probe",
            ["partition"],
            registry=registry,
        )

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample (0.0 if it was never set), for tests and tools."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found
