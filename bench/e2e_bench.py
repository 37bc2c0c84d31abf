"""PlaceOrder ACK latency through the public gRPC API, at a fixed rate, against a gRPC floor.

One run measures, with one open-loop load generator at --rate requests/s for --seconds:

- floor: a bare grpc.aio server on 127.0.0.1 with one unary method that echoes its bytes
  (the same serialized PlaceOrderRequest and API-key metadata the mesh gets);
- embedded: the whole mesh in this process as `ordermesh up` composes it: ubscore, the
  matcher, settlement and the gateway on the in-memory bus (its journal in a temporary
  directory) and PostgreSQL (pgserver in a temporary directory, or --postgres);
- kafka: the same four services on a KafkaBus: a broker started here the way the tests start
  theirs (tests/servers/kafka.py), or the one --kafka names; PostgreSQL as above.

The generator runs in a separate process, as a client would, so it never shares the mesh's
event loop. It schedules request i at start + i/rate, whatever has completed (open loop:
when the server falls behind, requests queue and the latency shows it), up to --max-orders.
Latency is taken from the scheduled time (coordinated-omission aware) and from the actual
send. Orders are BTC-USDT limit orders with response_type ACK and unique client_order_ids:
pairs of a SELL at 100 and a BUY at 101 for 0.01 from two different accounts, so the book
stays shallow while the matcher and settlement trade as the calls go. The gateway's
per-account rate limit is lifted (it is a policy, not the path being measured).

Not a test: it never passes or fails. It prints a table and writes bench/results/e2e.json
with each run, the floor and the ratios (p50 and p99 of each mode / the floor's). Everything
it starts (broker, PostgreSQL, servers, the client process) it stops, by handle.

    .venv/bin/python bench/e2e_bench.py
    .venv/bin/python bench/e2e_bench.py --modes embedded --seconds 5
    .venv/bin/python bench/e2e_bench.py --kafka 127.0.0.1:9092 --postgres postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repo root must be importable
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from bench.common import in_own_process, latency_summary, write_result  # noqa: E402 - path above
from gateway.bootstrap import GatewaySettings  # noqa: E402
from gateway.bootstrap import build as build_gateway  # noqa: E402
from matcher.bootstrap import MatcherSettings  # noqa: E402
from matcher.bootstrap import build as build_matcher  # noqa: E402
from ordermesh.bus.base import Bus  # noqa: E402
from ordermesh.bus.kafka import KafkaBus  # noqa: E402
from ordermesh.bus.memory import MemoryBus  # noqa: E402
from ordermesh.telemetry import configure_logging  # noqa: E402
from ordermesh.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402
from settlement.bootstrap import SettlementSettings  # noqa: E402
from settlement.bootstrap import build as build_settlement  # noqa: E402
from ubscore.bootstrap import UBSCoreSettings  # noqa: E402
from ubscore.bootstrap import build as build_ubscore  # noqa: E402
from ubscore.lifecycle import LogTopics  # noqa: E402

MODES = ("embedded", "kafka")
ACCOUNTS = tuple(range(1, 9))
"""Traders; even positions sell, odd positions buy."""
ADMIN_KEY = "bench-admin-key-0000000000000001"
SYMBOL = "BTC-USDT"
START_SECONDS = 120.0
"""How long a service may take to become SERVING."""
DRAIN_SECONDS = 60.0
"""How long the calls still in flight after the last send may take."""
CLIENT_SECONDS_EXTRA = 180.0
"""The client process's allowance beyond --seconds (start-up, funding, drain)."""
ECHO_METHOD = "/ordermeshbench.Echo/Echo"


def trader_key(account: int) -> str:
    """The API key of a trader account."""
    return f"bench-trader-key-{account:04d}-00000000"


def write_keys(path: Path) -> Path:
    """An admin key and one trader key per account of ACCOUNTS."""
    lines = [f'[[keys]]\nname = "admin"\nkey = "{ADMIN_KEY}"\nrole = "admin"\n']
    lines += [
        f'[[keys]]\nname = "trader-{a}"\nkey = "{trader_key(a)}"\naccount_id = {a}\n'
        'role = "trader"\n'
        for a in ACCOUNTS
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- the load (runs in the client process) ---------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What the client process is asked to do."""

    target: str
    """host:port to call."""
    echo: bool
    """True: call the echo method; False: the gateway's PlaceOrder."""
    rate: float
    seconds: float
    max_orders: int
    run_id: str
    """Makes client_order_ids unique across runs on a shared log."""


@dataclass
class Samples:
    """Per-request latencies in ns (successful calls only), and the failures by status."""

    from_schedule: list[int] = field(default_factory=list)
    from_send: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_details: dict[str, str] = field(default_factory=dict)
    """The first message of each status code."""
    first_send_ns: int = 0
    last_send_ns: int = 0
    last_done_ns: int = 0
    max_send_lag_ns: int = 0


def order_request(load: Load, i: int) -> tuple[gateway_pb2.PlaceOrderRequest, int]:
    """Order i and the account that places it: SELL 0.01 @ 100, then BUY 0.01 @ 101."""
    pair, buy = divmod(i, 2)
    account = ACCOUNTS[(2 * pair + buy) % len(ACCOUNTS)]
    request = gateway_pb2.PlaceOrderRequest(
        symbol=SYMBOL,
        side=common_pb2.SIDE_BUY if buy else common_pb2.SIDE_SELL,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        price="101" if buy else "100",
        quantity="0.01",
        client_order_id=f"{load.run_id}-{i}",
        response_type=common_pb2.RESPONSE_TYPE_ACK,
    )
    return request, account


async def fund(channel: grpc.aio.Channel) -> None:
    """Enough of both assets in every account for --max-orders orders."""
    stub = gateway_pb2_grpc.GatewayStub(channel)
    for account in ACCOUNTS:
        for asset, amount in (("BTC", "1000"), ("USDT", "10000000")):
            await stub.Deposit(
                gateway_pb2.DepositRequest(
                    account_id=account,
                    asset=asset,
                    amount=amount,
                    reference_id=f"bench-{uuid.uuid4().hex}",
                ),
                metadata=(("x-api-key", ADMIN_KEY),),
                timeout=30,
            )


def caller(load: Load, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[Any]]:
    """The call of request i: PlaceOrder, or the echo of PlaceOrder's bytes."""
    if load.echo:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)

        def call_echo(i: int) -> Awaitable[Any]:
            request, account = order_request(load, i)
            metadata = (("x-api-key", trader_key(account)),)
            return echo(request.SerializeToString(), metadata=metadata, timeout=DRAIN_SECONDS)

        return call_echo
    stub = gateway_pb2_grpc.GatewayStub(channel)

    def call_place(i: int) -> Awaitable[Any]:
        request, account = order_request(load, i)
        metadata = (("x-api-key", trader_key(account)),)
        return stub.PlaceOrder(request, metadata=metadata, timeout=DRAIN_SECONDS)

    return call_place


async def generate(load: Load) -> Samples:
    """Send request i at start + i/rate (open loop); wait for all; return the samples."""
    samples = Samples()
    async with grpc.aio.insecure_channel(load.target) as channel:
        await channel.channel_ready()
        if not load.echo:
            await fund(channel)
        call = caller(load, channel)
        if load.echo:
            await call(-1)  # as funding warms the gateway's path up
        count = min(load.max_orders, int(load.rate * load.seconds))
        interval_ns = round(1e9 / load.rate)

        async def one(i: int, scheduled: int) -> None:
            sent = time.perf_counter_ns()
            samples.max_send_lag_ns = max(samples.max_send_lag_ns, sent - scheduled)
            try:
                await call(i)
            except grpc.aio.AioRpcError as e:
                samples.errors[e.code().name] += 1
                samples.error_details.setdefault(e.code().name, e.details() or "")
                return
            done = time.perf_counter_ns()
            samples.from_schedule.append(done - scheduled)
            samples.from_send.append(done - sent)
            samples.last_done_ns = max(samples.last_done_ns, done)

        start = time.perf_counter_ns() + 10_000_000
        samples.first_send_ns = start
        tasks = []
        for i in range(count):
            scheduled = start + i * interval_ns
            delay = scheduled - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)  # pacing on the clock, not synchronisation
            tasks.append(asyncio.create_task(one(i, scheduled)))
        samples.last_send_ns = time.perf_counter_ns()
        await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in tasks:
            if not task.done():
                task.cancel()
                samples.errors["NOT_DONE_IN_TIME"] += 1
    return samples


async def measure(load: Load) -> Samples:
    """Run the load in a fresh client process and wait for its samples."""
    return await in_own_process(
        generate, load, load.seconds + CLIENT_SECONDS_EXTRA, "e2e-bench-client"
    )


def figures(samples: Samples, args: argparse.Namespace) -> dict[str, Any]:
    """Percentiles (µs) from the schedule and from the send, rates and errors."""
    sent = len(samples.from_schedule) + sum(samples.errors.values())
    send_span = max(samples.last_send_ns - samples.first_send_ns, 1) / 1e9
    done_span = max(samples.last_done_ns - samples.first_send_ns, 1) / 1e9
    result: dict[str, Any] = {
        "requests": sent,
        "completed": len(samples.from_schedule),
        "errors": dict(samples.errors),
        "error_details": samples.error_details,
        "target_rate_per_second": args.rate,
        "achieved_send_rate_per_second": round(sent / send_span, 1),
        "completed_per_second": round(len(samples.from_schedule) / done_span, 1),
        "max_send_lag_us": samples.max_send_lag_ns / 1_000,
    }
    if samples.from_schedule:
        result["from_schedule"] = latency_summary(samples.from_schedule)
        result["from_send"] = latency_summary(samples.from_send)
    return result


# -- what is measured (runs in this process) -------------------------------------------------


async def echo(
    request: bytes,
    context: grpc.aio.ServicerContext[bytes, bytes],  # noqa: ARG001 - gRPC's handler signature
) -> bytes:
    """The floor's one method: the request's bytes back."""
    return request


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A bare grpc.aio server on 127.0.0.1 with the echo method; yields its address."""
    server = grpc.aio.server()
    service, method = ECHO_METHOD.strip("/").split("/")
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(1)


class Running:
    """A started service and its run() task."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.task: asyncio.Task[int] = asyncio.create_task(service.run())

    async def serving(self) -> None:
        """Wait until SERVING; raise if run() ends first or the deadline passes."""
        waiting = asyncio.ensure_future(self.service.wait_serving())
        done, _ = await asyncio.wait(
            {waiting, self.task}, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            waiting.cancel()
            why = f"run() ended: {self.task.result()}" if self.task in done else "timed out"
            raise RuntimeError(f"{type(self.service).__name__} did not serve: {why}")

    async def stop(self) -> None:
        """Stop the service and wait for run() to end."""
        if not self.task.done():
            await self.service.stop()
        await asyncio.wait({self.task}, timeout=START_SECONDS)


@contextlib.asynccontextmanager
async def mesh(bus: Bus, dsn: str, keys: Path, prefix: str) -> AsyncIterator[str]:
    """ubscore, the matcher, settlement, then the gateway, as `ordermesh up` starts them.

    Ports are free ones on 127.0.0.1, metrics are off, and the gateway's rate limit is lifted;
    everything else is each service's default. Yields the gateway's address.
    """
    common: dict[str, Any] = {
        "host": "127.0.0.1", "port": 0, "metrics_port": 0, "topic_prefix": prefix,
        "log_level": "warning", "log_format": "console", "grace_seconds": 2.0,
    }  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        ubscore = build_ubscore(UBSCoreSettings(**common), bus)
        matcher = build_matcher(
            MatcherSettings(
                **common, group_id=f"{prefix}matcher", transactional_id_prefix=f"{prefix}matcher"
            ),
            bus,
        )
        settlement = await build_settlement(SettlementSettings(**common, postgres=dsn), bus, dsn)
        started = []
        for service in (ubscore, matcher, settlement):
            await service.start()
            running = Running(service)
            stack.push_async_callback(running.stop)
            started.append(running)
        for running in started[:2]:
            await running.serving()
        gateway = build_gateway(
            GatewaySettings(
                **common,
                api_keys=str(keys),
                ubscore=f"127.0.0.1:{ubscore.port}",
                matcher=f"127.0.0.1:{matcher.port}",
                settlement=f"127.0.0.1:{settlement.port}",
                rate_per_second=1e9,
                burst=10**9,
            ),
            bus,
        )
        await gateway.start()
        front = Running(gateway)
        stack.push_async_callback(front.stop)
        await front.serving()
        yield f"127.0.0.1:{gateway.port}"


@contextlib.asynccontextmanager
async def database(server_dsn: str) -> AsyncIterator[str]:
    """A fresh database on the server of `server_dsn`, dropped afterwards."""
    from tests.servers.postgres import (  # noqa: PLC0415 - only with a server to use
        create_database,
        drop_database,
        new_database_name,
        with_database,
    )

    name = new_database_name()
    await create_database(server_dsn, name)
    try:
        yield with_database(server_dsn, name)
    finally:
        await drop_database(server_dsn, name)


@contextlib.contextmanager
def kafka_broker(given: str) -> Iterator[str]:
    """The Kafka to use: the one given, else a broker started here and stopped afterwards."""
    if given:
        yield given
        return
    from tests.servers.kafka import KafkaBroker, cache_dir, ensure_jars  # noqa: PLC0415

    broker = KafkaBroker(ensure_jars(cache_dir()))
    try:
        print("starting a Kafka broker ...", flush=True)
        yield broker.start()
    finally:
        broker.stop()


async def run_mode(mode: str, args: argparse.Namespace, server_dsn: str, work: Path) -> Samples:
    """Build the mesh of `mode`, drive it, tear it down; return the samples."""
    prefix = f"bench{uuid.uuid4().hex[:8]}." if mode == "kafka" else ""
    bus: Bus
    if mode == "kafka":
        bus = KafkaBus(args.kafka, client_id="e2e-bench")
    else:
        bus = await asyncio.to_thread(MemoryBus, data_dir=work / "log")
    try:
        async with (
            database(server_dsn) as dsn,
            mesh(bus, dsn, work / "keys.toml", prefix) as target,
        ):
            print(f"{mode}: the mesh serves at {target}; driving it", flush=True)
            return await measure(load_of(args, target, echo=False))
    finally:
        await bus.close()
        if mode == "kafka":
            await delete_prefixed(args.kafka, prefix)


def load_of(args: argparse.Namespace, target: str, *, echo: bool) -> Load:
    """The load the flags ask for, against `target`, with a fresh run id."""
    return Load(target, echo, args.rate, args.seconds, args.max_orders, uuid.uuid4().hex[:8])


async def delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Delete the topics this run created on the cluster."""
    from tests.servers.kafka import delete_topics  # noqa: PLC0415 - only with Kafka

    names = LogTopics.with_prefix(prefix)
    await delete_topics(bootstrap, [names.orders, names.ledger, names.engine, names.snapshots])


@contextlib.contextmanager
def postgres_server(given: str) -> Iterator[str]:
    """The PostgreSQL server to use: the one given, else pgserver in a temporary directory."""
    if given:
        yield given
        return
    from tests.servers.postgres import EmbeddedPostgres  # noqa: PLC0415 - only when needed

    server = EmbeddedPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


def ratios(runs: dict[str, dict[str, Any]], floor: dict[str, Any]) -> dict[str, Any]:
    """p50 and p99 (from the schedule, and from the send) of each mode / the floor's."""
    out: dict[str, Any] = {}
    for mode, run in runs.items():
        if "from_schedule" not in run or "from_schedule" not in floor:
            continue
        out[mode] = {
            f"{basis}_{p}": round(run[basis][f"{p}_us"] / floor[basis][f"{p}_us"], 2)
            for basis in ("from_schedule", "from_send")
            for p in ("p50", "p99")
        }
    return out


def table(runs: dict[str, dict[str, Any]]) -> str:
    """One line per run: percentiles from the schedule (ms), from the send, rates, errors."""
    head = (
        f"{'run':<10}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>9}"
        f"{'send p50':>10}{'send p99':>10}{'sent/s':>9}{'done/s':>9}{'errors':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, run in runs.items():
        if "from_schedule" not in run:
            lines.append(f"{name:<10}  no successful call; errors {run['errors']}")
            continue
        s, d = run["from_schedule"], run["from_send"]
        ms = [s[k] / 1000 for k in ("p50_us", "p90_us", "p99_us", "p99.9_us")]
        lines.append(
            f"{name:<10}" + "".join(f"{v:>8.2f}" for v in ms) + f"{s['max_us'] / 1000:>9.2f}"
            f"{d['p50_us'] / 1000:>10.2f}{d['p99_us'] / 1000:>10.2f}"
            f"{run['achieved_send_rate_per_second']:>9.1f}{run['completed_per_second']:>9.1f}"
            f"{sum(run['errors'].values()):>8}"
        )
    lines.append("(ms; p50..max from the scheduled send time, 'send' from the actual send)")
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The floor, then each mode; the payload of bench/results/e2e.json."""
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ordermesh-e2e-bench-") as directory:
        work = Path(directory)
        write_keys(work / "keys.toml")
        async with echo_server() as target:
            print(f"floor: echo server at {target}; driving it", flush=True)
            floor = figures(await measure(load_of(args, target, echo=True)), args)
        runs["floor"] = floor
        with postgres_server(args.postgres) as server_dsn:
            for mode in args.modes:
                if mode == "kafka":
                    with kafka_broker(args.kafka) as bootstrap:
                        args.kafka = bootstrap
                        runs[mode] = figures(await run_mode(mode, args, server_dsn, work), args)
                else:
                    runs[mode] = figures(await run_mode(mode, args, server_dsn, work), args)
    return {
        "config": {
            "rate_per_second": args.rate,
            "seconds": args.seconds,
            "max_orders": args.max_orders,
            "response_type": "ACK",
            "orders": f"{SYMBOL} LIMIT GTC pairs: SELL 0.01 @ 100, BUY 0.01 @ 101",
            "accounts": len(ACCOUNTS),
            "kafka": "given" if args.kafka_given else "started by the bench (single KRaft node)",
            "postgres": "given" if args.postgres else "pgserver in a temporary directory",
            "client": "a separate process, one channel, open loop",
        },
        "floor": runs["floor"],
        "runs": {mode: runs[mode] for mode in args.modes},
        "ratios_to_floor": ratios({m: runs[m] for m in args.modes}, runs["floor"]),
        "table": table(runs).splitlines(),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; --help says what the bench does."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n    ")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each run sends")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second, fixed")
    parser.add_argument(
        "--max-orders", type=int, default=10_000, help="at most this many requests per run"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument(
        "--kafka", default="", help="bootstrap HOST:PORT of a Kafka to use; empty: start one"
    )
    parser.add_argument(
        "--postgres",
        default="",
        help="DSN of a PostgreSQL server the bench may create databases on; empty: pgserver",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave bench/results/e2e.json alone"
    )
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes takes {', '.join(MODES)}; was {unknown or 'empty'}")
    if args.rate <= 0 or args.seconds <= 0 or args.max_orders <= 0:
        parser.error("--rate, --seconds and --max-orders must be positive")
    args.kafka_given = bool(args.kafka)
    return args


def main() -> None:
    """Measure, print the table, write bench/results/e2e.json."""
    args = parse()
    configure_logging("warning", "console")
    payload = asyncio.run(bench(args))
    print()
    print("\n".join(payload["table"]))
    for mode, ratio in payload["ratios_to_floor"].items():
        print(
            f"{mode}: p50 x{ratio['from_schedule_p50']}, p99 x{ratio['from_schedule_p99']}"
            " of the floor (from the schedule)"
        )
    for name, run in {"floor": payload["floor"], **payload["runs"]}.items():
        for code, detail in run["error_details"].items():
            print(f"{name}: {run['errors'][code]} x {code}, e.g. {detail[:200]!r}")
    if not args.no_write:
        print(f"wrote {write_result('e2e', payload)}")


if __name__ == "__main__":
    main()
