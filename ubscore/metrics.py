"""ubscore's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class UBSCoreMetrics:
    """The service's counters, gauges and histograms.

    Each instance has its own registry, so several services (or tests) in one process never
    share or clash on metric names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            buckets=_LATENCY_BUCKETS,
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
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port in a background thread; return the port bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = (server, thread)
        bound: int = server.server_address[1]
        return bound

    def close(self) -> None:
        """Stop the HTTP server, if one was started."""
        http, self._http = self._http, None
        if http is not None:
            server, thread = http
            server.shutdown()
            server.server_close()
            thread.join()
