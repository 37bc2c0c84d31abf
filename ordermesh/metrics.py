"""What every service's Prometheus metrics share: latency buckets, a registry, /metrics."""

from __future__ import annotations

import threading
from typing import ClassVar, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
"""Histogram buckets, in seconds, for answering a call or a produce being acknowledged."""


class ServiceMetrics:
    """A registry of one service instance's metrics, served over HTTP when asked.

    Each instance has its own registry, so several services (or tests) in one process never
    share or clash on metric names.
    """

    join_seconds: ClassVar[float | None] = None
    """How long `close` waits for the HTTP thread to end; None: until it ends."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        """Where the service's metrics register; a new one unless given."""
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port in a background thread; return the port bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = (server, thread)
        bound: int = server.server_address[1]
        return bound

    def close(self) -> None:
        """Stop serving /metrics, if it was served."""
        http, self._http = self._http, None
        if http is not None:
            server, thread = http
            server.shutdown()
            server.server_close()
            thread.join(timeout=self.join_seconds)
