"""The composition root: settings -> keys, rate limit, upstream channels, engine tail, server.

`build` wires a gateway on a bus the caller owns (a KafkaBus for `python -m gateway`, a
MemoryBus when the whole mesh runs in one process) and reads only its two files (markets,
API keys); `GatewayService.start` positions the engine tail, opens the upstream channels
and listens (NOT_SERVING); `GatewayService.run` serves until a stop (status 0) or a
fail-stop (status 1). Health says SERVING only while every upstream channel is connected
and the engine tail is positioned.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import structlog

from gateway.auth import ApiKeys
from gateway.metrics import GatewayMetrics
from gateway.orders import OrderDesk
from gateway.ratelimit import RateLimiter
from gateway.reads import Reads
from gateway.results import EngineTail
from gateway.service import SERVICE_NAME, GatewayServicer
from gateway.stream_hub import StreamHub
from gateway.streams import LiveStreams, StreamSettings
from gateway.upstream import UpstreamAddresses, Upstreams
from ordermesh.bus import topics
from ordermesh.bus.base import Bus
from ordermesh.config import CommonSettings, SettingsError, check_names, check_ranges, setting
from ordermesh.grpcx.server import GrpcServer, connection_options
from ordermesh.markets import MarketTable, load_markets
from ordermesh.runtime import Runner
from ordermesh.v1 import gateway_pb2_grpc

log = structlog.get_logger(__name__)

_ADDRESS: Final = re.compile(r"\S+:[0-9]{1,5}")
DEFAULT_RATE_PER_SECOND: Final = 50.0
"""Gateway calls per second an account may make on average, unless configured."""
DEFAULT_BURST: Final = 100
"""Gateway calls an account may make at once, above its rate, unless configured."""


@dataclass(frozen=True, slots=True)
class GatewaySettings(CommonSettings):
    """Everything `python -m gateway` can be told (flags, then ORDERMESH_* variables)."""

    host: str = setting("127.0.0.1", "address the gRPC and metrics servers listen on")
    port: int = setting(50051, "gRPC port of the public API; 0 picks a free one")
    metrics_port: int = setting(9101, "Prometheus /metrics port on the same host; 0 turns it off")
    kafka: str = setting("", "Kafka bootstrap servers, host:port[,host:port]; required")
    ubscore: str = setting("127.0.0.1:50052", "ubscore's gRPC address, host:port")
    matcher: str = setting("127.0.0.1:50053", "the matcher's gRPC address, host:port")
    settlement: str = setting("127.0.0.1:50054", "settlement's gRPC address, host:port")
    api_keys: str = setting(
        "", "TOML file of API keys ([[keys]] with key_sha256 or key, account_id, role); required"
    )
    rate_per_second: float = setting(
        DEFAULT_RATE_PER_SECOND, "calls per second each account may make on average"
    )
    burst: int = setting(DEFAULT_BURST, "calls an account may make at once, above its rate")
    upstream_timeout_seconds: float = setting(
        5.0, "deadline of each call to ubscore, the matcher or settlement"
    )
    result_timeout_seconds: float = setting(
        5.0, "how long a RESULT call waits for the matcher before answering at ACK level"
    )
    probe_seconds: float = setting(1.0, "how often upstream connections are checked for health")
    topic_prefix: str = setting("", "put in front of every topic name (meshes sharing a cluster)")
    grace_seconds: float = setting(10.0, "how long calls in flight may finish on shutdown")
    stream_queue: int = setting(
        10_000,
        "how far a StreamOrderUpdates or StreamMarketData client may fall behind (order"
        " updates, or a market's commands) before its stream ends with RESOURCE_EXHAUSTED",
    )
    order_entry_window: int = setting(
        1000, "requests in flight on one OrderEntry stream; reading stops while it is full"
    )
    max_connection_age_seconds: float = setting(
        300.0,
        "close each client connection (GOAWAY) after about this long (gRPC adds a tenth of "
        "jitter), so long-lived clients reconnect through the load balancer: what drains a "
        "replica in a rollout; 0: never",
    )
    max_connection_age_grace_seconds: float = setting(
        30.0, "how long calls (and streams) may go on after that GOAWAY; 0: without end"
    )
    keepalive_seconds: float = setting(
        60.0, "ping idle client connections this often, to find dead peers; 0: no pings"
    )
    keepalive_timeout_seconds: float = setting(
        20.0, "close a connection whose keepalive ping is unanswered this long"
    )

    def __post_init__(self) -> None:
        check_ranges(
            self,
            above_zero=(
                "rate_per_second",
                "upstream_timeout_seconds",
                "result_timeout_seconds",
                "probe_seconds",
            ),
            at_least_one=("burst", "stream_queue", "order_entry_window"),
        )
        check_names(self)
        check_ranges(
            self,
            ports=(),
            above_zero=("keepalive_timeout_seconds",),
            not_negative=(
                "max_connection_age_seconds",
                "max_connection_age_grace_seconds",
                "keepalive_seconds",
            ),
        )
        for name in ("ubscore", "matcher", "settlement"):
            if _ADDRESS.fullmatch(getattr(self, name)) is None:
                raise SettingsError(f"{name} must be host:port, was {getattr(self, name)!r}")

    @property
    def engine_topic(self) -> str:
        """ordermesh.engine, prefixed."""
        return self.topic_prefix + topics.ENGINE

    def addresses(self) -> UpstreamAddresses:
        """Where the internal services listen."""
        return UpstreamAddresses(self.ubscore, self.matcher, self.settlement)


class GatewayService:
    """One gateway replica: gRPC server, upstream channels, engine tail. Built by `build`."""

    def __init__(
        self,
        settings: GatewaySettings,
        bus: Bus,
        markets: MarketTable,
        keys: ApiKeys,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.upstream = Upstreams(settings.addresses(), settings.upstream_timeout_seconds)
        self.tail = EngineTail(bus, settings.engine_topic)
        desk = OrderDesk(
            markets, self.upstream, self.tail, self.metrics, settings.result_timeout_seconds
        )
        limiter = RateLimiter(settings.rate_per_second, settings.burst, clock)
        self.hub = StreamHub(markets, settings.stream_queue)
        self.tail.listen(self.hub)
        self.streams = LiveStreams(
            markets, self.tail, self.hub, self.upstream, desk, self.metrics,
            StreamSettings(queue=settings.stream_queue, window=settings.order_entry_window),
        )  # fmt: skip
        servicer = GatewayServicer(
            keys, limiter, desk, Reads(markets, self.upstream), self.metrics, self.streams
        )
        self.server = GrpcServer(
            service_names=[SERVICE_NAME],
            registrars=[lambda s: gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, s)],
            host=settings.host,
            port=settings.port,
            grace_seconds=settings.grace_seconds,
            options=connection_options(
                max_age_seconds=settings.max_connection_age_seconds,
                max_age_grace_seconds=settings.max_connection_age_grace_seconds,
                keepalive_seconds=settings.keepalive_seconds,
                keepalive_timeout_seconds=settings.keepalive_timeout_seconds,
            ),
        )
        self.metrics_port = 0
        """The metrics port bound by `start` (0: not served)."""
        self.serving = False
        """Whether health says SERVING now."""
        self._serving_event = asyncio.Event()
        self._events_counted = 0
        self._closed = False
        self._runner = Runner(self.server, self._close)

    @property
    def port(self) -> int:
        """The gRPC port bound by `start`."""
        return self.server.bound_port

    async def start(self) -> int:
        """Position the engine tail, open the upstream channels, serve metrics and gRPC.

        Health stays NOT_SERVING until `run` finds every dependency ready.

        Returns:
            The gRPC port bound.

        Raises:
            BusError: the bus cannot be reached.
            OSError: the port cannot be bound.
        """
        await self.tail.start()
        self.upstream.open()
        if self.settings.metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        port = await self.server.start()
        log.info(
            "gateway started",
            port=port,
            metrics_port=self.metrics_port,
            upstream=self.settings.addresses(),
            engine_topic=self.tail.topic,
        )
        return port

    async def run(self) -> int:
        """Serve until stopped (status 0) or until the engine tail fails (status 1)."""
        return await self._runner.run({"engine-tail": self.tail.run(), "probe": self._probe_loop()})

    async def stop(self) -> None:
        """Begin a graceful stop: `run` returns once calls in flight are answered."""
        await self._runner.stop()

    async def wait_serving(self) -> None:
        """Return once health says SERVING (for tests and an all-in-one `ordermesh up`)."""
        await self._serving_event.wait()

    async def _probe_loop(self) -> NoReturn:
        probe = self.settings.probe_seconds
        while True:
            connected = await self.upstream.connected(within=probe)
            await self._set_serving(self.tail.positioned and all(connected.values()), connected)
            read = self.tail.events_read
            self.metrics.engine_events.inc(read - self._events_counted)
            self._events_counted = read
            await asyncio.sleep(probe)  # the probe's period

    async def _set_serving(self, serving: bool, connected: dict[str, bool]) -> None:
        if serving == self.serving or self._closed:
            return
        self.serving = serving
        if serving:
            self._serving_event.set()
        else:
            self._serving_event.clear()
        self.metrics.serving.set(1 if serving else 0)
        await self.server.set_serving(serving)
        log.info("health", serving=serving, upstream=connected, engine_tail=self.tail.positioned)

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.tail.close()
            await self.upstream.close()
        finally:
            self.metrics.close()


def build(
    settings: GatewaySettings,
    bus: Bus,
    *,
    markets: MarketTable | None = None,
    keys: ApiKeys | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> GatewayService:
    """A gateway on `bus` (not started; the caller owns and closes the bus).

    Args:
        settings: what to serve and how.
        bus: the log (KafkaBus, or a MemoryBus in one process).
        markets: the market table; loaded from settings.markets when None.
        keys: the API keys; loaded from settings.api_keys when None.
        clock: monotonic seconds, for the rate limiter.

    Raises:
        SettingsError: no API key file is configured.
        KeyFileError: the API key file is missing or invalid.
        MarketConfigError: the markets file is missing or invalid.
    """
    table = markets if markets is not None else load_markets(settings.markets)
    if keys is None:
        if not settings.api_keys:
            raise SettingsError(
                "api_keys is required: the path of a TOML file of API keys (--api-keys or "
                "ORDERMESH_API_KEYS); the gateway has no built-in keys"
            )
        keys = ApiKeys.load(Path(settings.api_keys))
    return GatewayService(settings, bus, table, keys, clock=clock)
