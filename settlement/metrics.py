"""settlement's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ordermesh.metrics import ServiceMetrics

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class SettlementMetrics(ServiceMetrics):
    """Counters, gauges and histograms of the batch writer."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.batches = Counter(
            "ordermesh_settlement_batches",
            "Batches committed to PostgreSQL",
            registry=registry,
        )
        self.records = Counter(
            "ordermesh_settlement_records",
            "Log records applied (of ordermesh.orders, .engine and .ledger)",
            registry=registry,
        )
        self.rows = Counter(
            "ordermesh_settlement_rows",
            "Rows written, by table",
            ["table"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "ordermesh_settlement_batch_seconds",
            "Time to plan and commit one batch (decode, verify, one transaction)",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "ordermesh_settlement_consumer_lag_records",
            "Records in the log not yet read, summed over the partitions, at the last probe",
            registry=registry,
        )
        self.carried = Gauge(
            "ordermesh_settlement_carried_records",
            "Engine records held for the next batch (after the last complete command)",
            registry=registry,
        )
