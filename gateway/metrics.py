"""The gateway's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ordermesh.metrics import LATENCY_BUCKETS, ServiceMetrics


class GatewayMetrics(ServiceMetrics):
    """Calls by method and status, orders by result and reason, latency per method."""

    def __init__(self) -> None:
        super().__init__()
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
            buckets=LATENCY_BUCKETS,
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
