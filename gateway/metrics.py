"""The gateway's Prometheus metrics, in a registry of their own, served over HTTP when asked."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ordermesh.metrics import LATENCY_BUCKETS, ServiceMetrics


class GatewayMetrics(ServiceMetrics):
    """Calls by method and status, orders by result and reason, latency per method, streams."""

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
        self.streams_open = Gauge(
            "ordermesh_gateway_streams_open",
            "Streams open now, by method",
            ["method"],
            registry=registry,
        )
        self.stream_messages = Counter(
            "ordermesh_gateway_stream_messages",
            "Messages sent on streams, by method",
            ["method"],
            registry=registry,
        )
        self.streams_ended = Counter(
            "ordermesh_gateway_streams_ended",
            "Streams ended, by method and reason (client_gone, completed, refused, fell_behind,"
            " tail_stopped, log_broken, resync, dependency, internal)",
            ["method", "reason"],
            registry=registry,
        )
        self.order_entry_in_flight = Gauge(
            "ordermesh_gateway_order_entry_in_flight",
            "OrderEntry requests read and not yet answered, over all streams",
            registry=registry,
        )
