"""The gateway's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class GatewayMetrics:
    """Calls by method and status, orders by result and reason, latency per method.

    Each instance has its own registry, so several services (or tests) in one process never
    share or clash on metric names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.calls = Counter(
            "ordermesh_gateway_calls",
            "Calls answered, by method and gRPC status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "ordermesh_gateway_call_seconds",
            "Time from receiving a call to answering it, by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.orders = Counter(
            "ordermesh_gateway_orders",
            "PlaceOrder answers by result (the order status, duplicate, or refused) and reason",
            ["result", "reason"],
            registry=registry,
        )
        self.result_timeouts = Counter(
            "ordermesh_gateway_result_timeouts",
            "RESULT calls answered at ACK level because the matcher's answer came too late",
            ["method"],
            registry=registry,
        )
        self.engine_events = Counter(
            "ordermesh_gateway_engine_events",
            "ordermesh.engine events read by the engine tail",
            registry=registry,
        )
        self.serving = Gauge(
            "ordermesh_gateway_serving",
            "1 while health says SERVING: upstreams connected and the engine tail positioned",
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
