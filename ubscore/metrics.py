"""ubscore's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ordermesh.metrics import LATENCY_BUCKETS, ServiceMetrics


class UBSCoreMetrics(ServiceMetrics):
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.requests = Counter(
            "ordermesh_ubscore_requests",
            "Requests answered, by method and result (accepted, duplicate, or the reject reason)",
            ["method", "result"],
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "ordermesh_ubscore_produce_seconds",
            "Time from handing a record to the producer until the log acknowledged it",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.engine_events = Counter(
            "ordermesh_ubscore_engine_events_applied",
            "ordermesh.engine records applied while live",
            registry=registry,
        )
        self.replayed_records = Gauge(
            "ordermesh_ubscore_replayed_records",
            "Log records applied by the last recovery",
            registry=registry,
        )
        self.replay_seconds = Gauge(
            "ordermesh_ubscore_replay_seconds",
            "Duration of the last recovery: snapshot load, replay and checks",
            registry=registry,
        )
        self.restored_from_snapshot = Gauge(
            "ordermesh_ubscore_restored_from_snapshot",
            "1 if the last recovery started from a snapshot, 0 if from the start of the log",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "ordermesh_ubscore_consumer_lag_records",
            "ordermesh.engine records not yet applied, at the last probe",
            registry=registry,
        )
        self.snapshots = Counter(
            "ordermesh_ubscore_snapshots_saved",
            "Snapshots saved, by trigger (periodic, shutdown)",
            ["trigger"],
            registry=registry,
        )
        self.snapshot_bytes = Gauge(
            "ordermesh_ubscore_snapshot_bytes",
            "Size of the last snapshot saved",
            registry=registry,
        )
