"""The whole mesh in this process: ubscore, matcher, settlement and the gateway on one bus.

The bus is a fresh MemoryBus, or the KafkaBus a test passes in (a real broker); every mesh has
its own topic prefix, so meshes on one cluster never meet. Settlement writes to a real
PostgreSQL database; the gateway's API keys come from a key file the test writes (the gateway
has none built in). Clients talk to the gateway over gRPC on 127.0.0.1 with `x-api-key`
metadata. Waits are conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.rpc import status_pb2

from gateway.bootstrap import GatewayService, GatewaySettings
from gateway.bootstrap import build as build_gateway
from matcher.bootstrap import MatcherService, MatcherSettings
from matcher.bootstrap import build as build_matcher
from ordermesh.bus.base import Bus, TopicPartition
from ordermesh.bus.memory import MemoryBus
from ordermesh.grpcx import errors
from ordermesh.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from settlement.bootstrap import SettlementService, SettlementSettings
from settlement.bootstrap import build as build_settlement
from tests import waiting
from ubscore.bootstrap import UBSCoreService, UBSCoreSettings
from ubscore.bootstrap import build as build_ubscore

DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.02
PARTITIONS = 2
ADMIN_KEY = "admin-key-written-by-the-test-0001"
ACCOUNTS = range(1, 21)
"""Accounts with a trader key in the test's key file."""


def trader_key(account: int) -> str:
    return f"trader-key-of-account-{account:04d}"


def write_key_file(path: Path) -> Path:
    """One admin key (no account) and a trader key for each of ACCOUNTS."""
    entries = [f'[[keys]]\nname = "admin"\nkey = "{ADMIN_KEY}"\nrole = "admin"\n']
    entries += [
        f'[[keys]]\nname = "trader-{a}"\nkey = "{trader_key(a)}"\naccount_id = {a}\n'
        'role = "trader"\n'
        for a in ACCOUNTS
    ]
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


class Service(Protocol):
    async def start(self) -> int: ...
    async def run(self) -> int: ...
    async def stop(self) -> None: ...


eventually = functools.partial(
    waiting.eventually, seconds=DEADLINE_SECONDS, poll_seconds=POLL_SECONDS
)
"""Wait for a condition with this file's deadline and poll interval."""


@dataclass
class Running:
    """A started service and its run() task."""

    service: Any
    task: asyncio.Task[int]

    async def stop(self) -> int:
        if not self.task.done():
            await self.service.stop()
        return await asyncio.wait_for(asyncio.shield(self.task), DEADLINE_SECONDS)


async def launch(stack: contextlib.AsyncExitStack, service: Service, *, wait: bool) -> Running:
    """Start `service`, run it, stop it when `stack` closes; wait until SERVING if asked."""
    await service.start()
    running = Running(service, asyncio.create_task(service.run()))
    stack.push_async_callback(running.stop)
    if wait:
        serving = asyncio.ensure_future(running.service.wait_serving())
        done, _ = await asyncio.wait(
            {serving, running.task}, timeout=DEADLINE_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if serving not in done:
            serving.cancel()
            outcome = running.task.result() if running.task in done else "not serving in time"
            raise AssertionError(f"{type(service).__name__} did not start: {outcome}")
    return running


@dataclass
class Mesh:
    """The four services and a gateway client."""

    bus: Bus
    prefix: str
    ubscore: Running
    matcher: Running
    settlement: Running
    gateway: Running
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayAsyncStub
    dsn: str = ""
    """Settlement's database."""
    handed_out: list[int] = field(default_factory=list)
    """The accounts `accounts` gave out so far."""
    _accounts: Iterator[int] = field(default_factory=lambda: iter(ACCOUNTS))

    @property
    def gateway_service(self) -> GatewayService:
        service: GatewayService = self.gateway.service
        return service

    def accounts(self, count: int) -> list[int]:
        """`count` accounts with trader keys, none used before by this mesh."""
        fresh = [next(self._accounts) for _ in range(count)]
        self.handed_out.extend(fresh)
        return fresh

    async def orders_end(self) -> dict[TopicPartition, int]:
        """The end offsets of the orders topic: commands logged so far."""
        topic = self.prefix + "ordermesh.orders"
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer = self.bus.consumer(read_committed=False)
        consumer.assign(partitions)
        await consumer.start()
        try:
            return await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()


def gateway_settings(mesh_ports: dict[str, int], prefix: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "port": 0,
        "metrics_port": 0,
        "ubscore": f"127.0.0.1:{mesh_ports['ubscore']}",
        "matcher": f"127.0.0.1:{mesh_ports['matcher']}",
        "settlement": f"127.0.0.1:{mesh_ports['settlement']}",
        "topic_prefix": prefix,
        "rate_per_second": 10_000.0,
        "burst": 10_000,
        "probe_seconds": 0.1,
        "grace_seconds": 1.0,
        "log_format": "console",
    }
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class Services:
    """ubscore, the matcher and settlement, running; where the gateway finds them."""

    ubscore: Running
    matcher: Running
    settlement: Running

    @property
    def ports(self) -> dict[str, int]:
        return {
            "ubscore": self.ubscore.service.port,
            "matcher": self.matcher.service.port,
            "settlement": self.settlement.service.port,
        }


async def start_services(
    stack: contextlib.AsyncExitStack, bus: Bus, dsn: str, prefix: str
) -> Services:
    """ubscore (which creates the topics), the matcher, then settlement; stopped by `stack`."""
    common: dict[str, Any] = {
        "port": 0, "metrics_port": 0, "topic_prefix": prefix, "partitions": PARTITIONS,
        "grace_seconds": 1.0,
    }  # fmt: skip
    ubscore: UBSCoreService = build_ubscore(UBSCoreSettings(**common), bus)
    ubscore_running = await launch(stack, ubscore, wait=True)
    matcher: MatcherService = build_matcher(
        MatcherSettings(
            **common, group_id=f"{prefix}matcher", transactional_id_prefix=prefix.rstrip(".")
        ),
        bus,
    )
    matcher_running = await launch(stack, matcher, wait=True)
    settlement: SettlementService = await build_settlement(
        SettlementSettings(**common, batch_wait_ms=2), bus, dsn
    )
    settlement_running = await launch(stack, settlement, wait=False)
    return Services(ubscore_running, matcher_running, settlement_running)


def new_prefix() -> str:
    """A topic prefix no other mesh uses (also names the matcher's group)."""
    return f"g{uuid.uuid4().hex[:10]}."


@contextlib.asynccontextmanager
async def mesh(
    dsn: str,
    key_file: Path,
    *,
    bus: Bus | None = None,
    prefix: str | None = None,
    **gateway_overrides: Any,
) -> AsyncIterator[Mesh]:
    """The three services, then the gateway, all SERVING.

    Args:
        dsn: settlement's (empty) database.
        key_file: the gateway's API keys.
        bus: the log; a fresh MemoryBus when None. The caller closes a bus it passes.
        prefix: the topic prefix; a new one when None.
        **gateway_overrides: GatewaySettings fields.
    """
    bus = MemoryBus() if bus is None else bus
    prefix = new_prefix() if prefix is None else prefix
    async with contextlib.AsyncExitStack() as stack:
        services = await start_services(stack, bus, dsn, prefix)
        settings = gateway_settings(
            services.ports, prefix, api_keys=str(key_file), **gateway_overrides
        )
        gateway = build_gateway(settings, bus)
        gateway_running = await launch(stack, gateway, wait=True)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
        stack.push_async_callback(channel.close)
        yield Mesh(
            bus, prefix, services.ubscore, services.matcher, services.settlement,
            gateway_running, channel, gateway_pb2_grpc.GatewayStub(channel), dsn,
        )  # fmt: skip


# -- calls -----------------------------------------------------------------------------------


def as_trader(account: int) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", trader_key(account)),)


AS_ADMIN = (("x-api-key", ADMIN_KEY),)


@dataclass(frozen=True)
class Refusal:
    """What a failed call carried: status code, ErrorInfo reason and field, message."""

    code: grpc.StatusCode
    reason: str
    field: str
    message: str


def refusal_of(error: grpc.aio.AioRpcError) -> Refusal:
    info = None
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            info = errors.error_info(status_pb2.Status.FromString(value))
    return Refusal(
        error.code(),
        info.reason if info is not None else "",
        info.metadata.get("field", "") if info is not None else "",
        error.details() or "",
    )


async def refused(call: Awaitable[Any]) -> Refusal:
    """Await a call that must fail; return how it failed."""
    try:
        answer = await call
    except grpc.aio.AioRpcError as e:
        return refusal_of(e)
    raise AssertionError(f"the call succeeded: {answer}")


async def deposit(mesh: Mesh, account: int, asset: str, amount: str) -> gateway_pb2.DepositResponse:
    return await mesh.stub.Deposit(
        gateway_pb2.DepositRequest(
            account_id=account, asset=asset, amount=amount, reference_id=f"dep-{uuid.uuid4().hex}"
        ),
        metadata=AS_ADMIN,
        timeout=DEADLINE_SECONDS,
    )


def limit(
    side: common_pb2.Side.ValueType,
    price: str,
    quantity: str,
    client_order_id: str,
    *,
    symbol: str = "BTC-USDT",
    result: bool = True,
    **fields: Any,
) -> gateway_pb2.PlaceOrderRequest:
    return gateway_pb2.PlaceOrderRequest(
        symbol=symbol,
        side=side,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        price=price,
        quantity=quantity,
        client_order_id=client_order_id,
        response_type=common_pb2.RESPONSE_TYPE_RESULT if result else common_pb2.RESPONSE_TYPE_ACK,
        **fields,
    )


async def place(
    mesh: Mesh, account: int, request: gateway_pb2.PlaceOrderRequest
) -> gateway_pb2.PlaceOrderResponse:
    return await mesh.stub.PlaceOrder(
        request, metadata=as_trader(account), timeout=DEADLINE_SECONDS
    )


async def balances(mesh: Mesh, account: int) -> dict[str, tuple[str, str]]:
    """{asset: (available, frozen)} as decimal strings."""
    answer = await mesh.stub.GetBalances(
        gateway_pb2.GetBalancesRequest(), metadata=as_trader(account), timeout=DEADLINE_SECONDS
    )
    return {b.asset: (b.available, b.frozen) for b in answer.balances}


async def settled_order(mesh: Mesh, account: int, order_id: int, status: int) -> gateway_pb2.Order:
    """The order from settlement once it has reached `status`."""

    async def probe() -> gateway_pb2.Order | None:
        try:
            answer = await mesh.stub.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=order_id),
                metadata=as_trader(account),
                timeout=DEADLINE_SECONDS,
            )
        except grpc.aio.AioRpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return answer.order

    found = await eventually(
        probe, lambda o: o is not None and o.status == status, what=f"order {order_id} settled"
    )
    assert found is not None
    return found
