"""Serve a grpc.aio server the ordermesh way: health, reflection, version, graceful stop.

Every ordermesh server:
- serves grpc.health.v1.Health, per service and overall, NOT_SERVING until the owner says
  it is ready (readiness reflects real dependencies) and again once shutdown begins;
- serves reflection, so grpcurl and friends can call it without the .proto files;
- stamps `x-ordermesh-version` on every response's initial metadata, health checks
  included, so an operator can tell a stale binary from a healthy one;
- on SIGTERM/SIGINT says NOT_SERVING, stops accepting calls and lets calls in flight
  finish within a grace period (gRPC sends GOAWAY to the clients), then exits;
- may bound a connection's age (`connection_options`), so clients of a replica being
  drained reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import ordermesh

VERSION_HEADER = "x-ordermesh-version"
"""Initial-metadata key that carries the server's build version."""

log = structlog.get_logger(__name__)
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class _VersionInterceptor(grpc.aio.ServerInterceptor):
    """Adds the version header to the initial metadata of every call."""

    def __init__(self, version: str) -> None:
        self._metadata = ((VERSION_HEADER, version),)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _with_metadata(handler, self._metadata)


def _with_metadata(
    handler: grpc.RpcMethodHandler[_Req, _Resp], metadata: tuple[tuple[str, str], ...]
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    """Wrap whichever behaviour the handler has so it sends `metadata` first."""

    def wrap(behaviour: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
        # A streaming handler is either an async generator or a coroutine that writes with
        # context.write (grpc's own health Watch); only the first can be iterated.
        if streaming_response and inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await context.send_initial_metadata(metadata)
                async for item in behaviour(request, context):
                    yield item

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.send_initial_metadata(metadata)
            return await behaviour(request, context)

        return unary

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attribute, build, streaming in kinds:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return build(
                wrap(behaviour, streaming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def connection_options(
    *,
    max_age_seconds: float = 0.0,
    max_age_grace_seconds: float = 0.0,
    keepalive_seconds: float = 0.0,
    keepalive_timeout_seconds: float = 20.0,
) -> list[tuple[str, int]]:
    """Channel arguments that bound how long a client stays on one connection.

    A server that closes connections after `max_age_seconds` (gRPC adds ±10% jitter) sends
    GOAWAY, and clients reconnect through whatever load balancer is in front: that is what
    moves long-lived HTTP/2 clients off a replica being drained, where a selector flip alone
    only moves new connections. Calls in flight on the old connection get
    `max_age_grace_seconds` more to finish. Keepalive pings find dead peers behind proxies.

    Args:
        max_age_seconds: connection lifetime; 0 for unlimited (gRPC's default).
        max_age_grace_seconds: time for calls in flight after the age; 0 for unlimited.
        keepalive_seconds: ping an idle connection this often; 0 for no pings.
        keepalive_timeout_seconds: close a connection whose ping is unanswered this long.

    Raises:
        ValueError: a negative duration, or a keepalive timeout not above 0.
    """
    named = {
        "max_age_seconds": max_age_seconds,
        "max_age_grace_seconds": max_age_grace_seconds,
        "keepalive_seconds": keepalive_seconds,
    }
    for name, value in named.items():
        if value < 0:
            raise ValueError(f"{name} must be 0 or more, was {value}")
    if not keepalive_timeout_seconds > 0:
        raise ValueError(
            f"keepalive_timeout_seconds must be above 0, was {keepalive_timeout_seconds}"
        )
    options: list[tuple[str, int]] = []
    if max_age_seconds:
        options.append(("grpc.max_connection_age_ms", _milliseconds(max_age_seconds)))
    if max_age_grace_seconds:
        options.append(("grpc.max_connection_age_grace_ms", _milliseconds(max_age_grace_seconds)))
    if keepalive_seconds:
        options += [
            ("grpc.keepalive_time_ms", _milliseconds(keepalive_seconds)),
            ("grpc.keepalive_timeout_ms", _milliseconds(keepalive_timeout_seconds)),
            # Idle connections are the ones a dead peer leaves behind: ping them too.
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    return options


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


Registrar = Callable[[grpc.aio.Server], None]
"""Adds one servicer to a server, e.g. `lambda s: add_FooServicer_to_server(impl, s)`."""


@dataclass
class GrpcServer:
    """A grpc.aio server with health, reflection and graceful shutdown.

    Build it, `await start()`, call `set_serving(True)` once dependencies are ready, and
    `await wait_for_termination()` (which returns after SIGTERM/SIGINT or `stop()`).
    """

    service_names: Sequence[str]
    """Full names of the services it serves, e.g. "ordermesh.v1.Gateway"."""
    registrars: Sequence[Registrar]
    """One per servicer."""
    host: str = "127.0.0.1"
    """Where to listen; 0.0.0.0 only where the deployment needs it (a pod)."""
    port: int = 0
    """0 picks a free port; `start()` returns the one bound."""
    grace_seconds: float = 10.0
    """How long calls in flight may finish once a stop begins."""
    version: str = field(default_factory=lambda: ordermesh.__version__)
    """Sent in VERSION_HEADER."""
    options: Sequence[tuple[str, Any]] = ()
    """Extra grpc channel arguments (e.g. keepalive, max_connection_age_ms)."""

    _server: grpc.aio.Server | None = field(default=None, init=False)
    _health: health.aio.HealthServicer | None = field(default=None, init=False)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    bound_port: int = field(default=0, init=False)
    """The port actually bound, after start()."""

    async def start(self) -> int:
        """Bind, register everything, start serving (health NOT_SERVING); return the port."""
        # gRPC sets SO_REUSEPORT by default: a second process could then listen on the same
        # port and take part of the calls. A port in use must fail the start instead.
        options = [("grpc.so_reuseport", 0), *self.options]
        server = grpc.aio.server(interceptors=[_VersionInterceptor(self.version)], options=options)
        for register in self.registrars:
            register(server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            self.bound_port = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as e:  # grpc's way of saying the bind failed
            raise OSError(f"cannot listen on {self.host}:{self.port} (bind failed: {e})") from e
        if self.bound_port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self._server = server
        await server.start()
        await self.set_serving(False)
        log.info(
            "grpc server started",
            address=f"{self.host}:{self.bound_port}",
            services=list(self.service_names),
            version=self.version,
        )
        return self.bound_port

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for every service and overall."""
        if self._health is None:
            raise RuntimeError("set_serving before start")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self._health.set(name, status)

    async def set_health(self, name: str, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for one extra health name (e.g. a standby's readiness)."""
        if self._health is None:
            raise RuntimeError("set_health before start")
        await self._health.set(
            name,
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT begin a graceful stop."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("stop requested", signal=signal.Signals(signum).name)
        task = asyncio.get_running_loop().create_task(self.stop())
        task.add_done_callback(lambda _: None)

    async def stop(self) -> None:
        """Stop accepting calls, let calls in flight finish within the grace period."""
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(self.grace_seconds)
        log.info("grpc server stopped", address=f"{self.host}:{self.bound_port}")

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped (signal or stop())."""
        if self._server is None:
            raise RuntimeError("wait_for_termination before start")
        await self._server.wait_for_termination()
