"""Order-entry throughput end to end: accepted/s and settled/s of `ordermesh up`, against a floor.

One run measures, for each mode, the mesh as a user runs it, in a process of its own:

- embedded: `ordermesh up` (the in-memory bus with its journal, the embedded PostgreSQL), on
  a temporary data directory and free loopback ports;
- kafka: `ordermesh up --kafka --postgres` on a broker started here the way the tests start
  theirs (tests/servers/kafka.py, or the one --kafka names) and a pgserver database.

A load process (separate from the mesh, and from this one) opens --connections OrderEntry
streams, one account each (--entry stream; or as many concurrent unary PlaceOrder callers
with --entry unary, one call at a time each), each stream keeping up to --window orders in
flight, until --orders orders are sent or --seconds have passed. Orders are BTC-USDT LIMIT
GTC with response_type ACK: SELL 0.01 @ 100 and BUY 0.01 @ 101 in turn, so every pair
trades at once and the book stays shallow. It is a closed loop at saturation: the ACK
latency includes the queueing of --connections x --window orders in flight. Measured:

- accepted/s: ACKs over the span from the first send to the last ACK; ACK latency p50/p99
  from each order's send; ACKs per second of the run (a stall shows there);
- settled/s: this process polls the settlement database (asyncpg, directly) until every
  acknowledged order of the run has the matcher's outcome in `orders` (any status but
  PENDING_NEW: the pairs end FILLED); orders over the span from the first send to the poll
  that saw them all;
- the mesh process's CPU time per accepted order, from the first send until all settled
  (PostgreSQL's and the broker's processes not included): on a shared machine the figure
  that moves least with the load of others.

The reference of the same run is a floor: a bare grpc.aio server in its own process that
answers each message with its bytes, driven by the same load process with the same requests,
connections and window (an OrderEntry-shaped bidi echo, or a unary echo). Ratios are the
mesh's accepted/s over the floor's. The machine's load average is recorded with each run.

The bench writes its own API key file into the data directory (an admin and --accounts
traders, as the file's header invites), because `ordermesh up` keeps the gateway's
per-account rate limit at its default (50 calls/s, bursts of 100): the orders are spread
over enough accounts that the limit is never what is measured.

Not a test: it never passes or fails. It prints a table and writes bench/results/stream.json.
Everything it starts (broker, PostgreSQL, the mesh, the load and floor processes) it stops,
by handle. --profile DIR runs the mesh under cProfile and leaves DIR/<mode>.prof.

    .venv/bin/python bench/stream_bench.py
    .venv/bin/python bench/stream_bench.py --modes embedded --orders 20000 --seconds 20
    .venv/bin/python bench/stream_bench.py --entry unary --profile /tmp/profiles
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repo root must be importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # noqa: E402
import grpc  # noqa: E402
import psutil  # noqa: E402

from bench.common import in_own_process, latency_summary, write_result  # noqa: E402 - path above
from ordermesh.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402

MODES: Final = ("embedded", "kafka")
ENTRIES: Final = ("stream", "unary")
BIN: Final = Path(sys.executable).parent / "ordermesh"
SYMBOL: Final = "BTC-USDT"
ADMIN_CALLS: Final = 90
"""Deposits per admin key: under the gateway's default burst, so funding is never throttled."""
UP_SECONDS: Final = 180.0
"""How long `ordermesh up` may take to print "ordermesh is up"."""
STOP_SECONDS: Final = 60.0
SETTLE_SECONDS: Final = 120.0
"""How long, after the last ACK, settlement may take to show every order."""
POLL_SECONDS: Final = 0.1
CLIENT_SECONDS_EXTRA: Final = 120.0
"""The load process's allowance beyond --seconds (connect, fund, drain)."""
CALL_SECONDS: Final = 60.0
ECHO_SERVICE: Final = "ordermeshbench.Echo"
PENDING_NEW: Final = common_pb2.ORDER_STATUS_PENDING_NEW
"""Settlement has the order's command but not yet the matcher's outcome for it."""


def trader_key(account: int) -> str:
    """The API key of a trader account."""
    return f"stream-bench-trader-{account:05d}-000000"


def admin_key(n: int) -> str:
    """The API key of admin n."""
    return f"stream-bench-admin-{n:05d}-0000000000"


def key_file(accounts: int) -> str:
    """The gateway's key file: admins enough to fund every account, and traders 1..accounts."""
    admins = range(2 * accounts // ADMIN_CALLS + 1)
    lines = [
        f'[[keys]]\nname = "admin-{n}"\nkey = "{admin_key(n)}"\nrole = "admin"\n' for n in admins
    ]
    lines += [
        f'[[keys]]\nname = "trader-{a}"\nkey = "{trader_key(a)}"\naccount_id = {a}\n'
        'role = "trader"\n'
        for a in range(1, accounts + 1)
    ]
    return "\n".join(lines)


# -- the load (runs in the load process) -----------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What the load process is asked to do."""

    target: str
    entry: str
    """"stream" (OrderEntry) or "unary" (PlaceOrder)."""
    echo: bool
    """True: the floor's echo methods instead of the gateway's."""
    orders: int
    seconds: float
    connections: int
    window: int
    accounts: int
    run_id: str


@dataclass
class Samples:
    """ACK latencies (ns, from the send) and failures; times are time.time_ns()."""

    latencies: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_details: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    first_send_ns: int = 0
    last_send_ns: int = 0
    last_ack_ns: int = 0

    per_second: Counter[int] = field(default_factory=Counter)
    """ACKs by whole second since the first send."""

    def acked(self, latency_ns: int) -> None:
        """Count one ACK that took `latency_ns`."""
        self.latencies.append(latency_ns)
        self.last_ack_ns = time.time_ns()
        self.per_second[(self.last_ack_ns - self.first_send_ns) // 1_000_000_000] += 1

    def failed(self, code: str, detail: str) -> None:
        """Count one failed order."""
        self.errors[code] += 1
        self.error_details.setdefault(code, detail[:300])


def account_of(load: Load, i: int) -> int:
    """The account that places order i: pairs go to two different accounts."""
    return (i % load.accounts) + 1


def order(load: Load, i: int) -> gateway_pb2.PlaceOrderRequest:
    """Order i: even ones SELL 0.01 @ 100, odd ones BUY 0.01 @ 101."""
    buy = i % 2 == 1
    return gateway_pb2.PlaceOrderRequest(
        symbol=SYMBOL,
        side=common_pb2.SIDE_BUY if buy else common_pb2.SIDE_SELL,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        price="101" if buy else "100",
        quantity="0.01",
        client_order_id=f"{load.run_id}-{i}",
        response_type=common_pb2.RESPONSE_TYPE_ACK,
    )


async def fund(channel: grpc.aio.Channel, load: Load) -> None:
    """Enough BTC and USDT in every account for every order of the run."""
    stub = gateway_pb2_grpc.GatewayStub(channel)
    used = load.accounts if load.entry == "unary" else min(load.accounts, load.connections)
    per_account = load.orders // used + 2
    btc, usdt = per_account * 0.01 + 1, per_account * 0.01 * 101 + 100
    semaphore = asyncio.Semaphore(32)

    async def deposit(n: int, account: int, asset: str, amount: float) -> None:
        metadata = (("x-api-key", admin_key(n // ADMIN_CALLS)),)
        request = gateway_pb2.DepositRequest(
            account_id=account,
            asset=asset,
            amount=f"{amount:.2f}",
            reference_id=f"{load.run_id}-fund-{account}-{asset}",
        )
        async with semaphore:
            await stub.Deposit(request, metadata=metadata, timeout=CALL_SECONDS)

    await asyncio.gather(
        *(
            deposit(n, account, asset, amount)
            for n, (account, (asset, amount)) in enumerate(
                itertools.product(range(1, used + 1), (("BTC", btc), ("USDT", usdt)))
            )
        )
    )


class Sender:
    """Hands out order numbers until --orders are out or --seconds have passed."""

    def __init__(self, load: Load, samples: Samples) -> None:
        self._load = load
        self._samples = samples
        self._next = itertools.count()
        self._until = 0.0

    def begin(self) -> None:
        """Start the clock."""
        self._until = time.monotonic() + self._load.seconds
        self._samples.first_send_ns = time.time_ns()

    def take(self) -> int | None:
        """The next order number, or None when the run is over."""
        if time.monotonic() >= self._until:
            return None
        i = next(self._next)
        if i >= self._load.orders:
            return None
        self._samples.sent += 1
        self._samples.last_send_ns = time.time_ns()
        return i


async def unary_worker(load: Load, channel: grpc.aio.Channel, sender: Sender, out: Samples) -> None:
    """One caller: PlaceOrder (or its echo), one at a time."""
    if load.echo:
        call: Any = channel.unary_unary(f"/{ECHO_SERVICE}/Unary")
    else:
        call = gateway_pb2_grpc.GatewayStub(channel).PlaceOrder
    while (i := sender.take()) is not None:
        request = order(load, i)
        metadata = (("x-api-key", trader_key(account_of(load, i))),)
        payload = request.SerializeToString() if load.echo else request
        sent = time.perf_counter_ns()
        try:
            await call(payload, metadata=metadata, timeout=CALL_SECONDS)
        except grpc.aio.AioRpcError as e:
            out.failed(e.code().name, e.details() or "")
            continue
        out.acked(time.perf_counter_ns() - sent)


async def stream_worker(
    load: Load, channel: grpc.aio.Channel, index: int, sender: Sender, out: Samples
) -> None:
    """One OrderEntry stream (or its echo) with up to --window orders in flight."""
    if load.echo:
        call: Any = channel.stream_stream(f"/{ECHO_SERVICE}/Stream")
    else:
        call = gateway_pb2_grpc.GatewayStub(channel).OrderEntry
    account = index % load.accounts + 1  # one key per stream: its account places every order
    stream = call(metadata=(("x-api-key", trader_key(account)),), timeout=load.seconds + 90)
    sent_at: dict[str, int] = {}
    room = asyncio.Semaphore(load.window)

    async def write() -> None:
        while True:
            await room.acquire()
            i = sender.take()
            if i is None:
                break
            request = gateway_pb2.OrderEntryRequest(place=order(load, i))
            sent_at[request.place.client_order_id] = time.perf_counter_ns()
            await stream.write(request.SerializeToString() if load.echo else request)
        await stream.done_writing()

    writer = asyncio.create_task(write())
    try:
        async for message in stream:
            answer = (
                gateway_pb2.OrderEntryResponse.FromString(_echoed_id(message))
                if load.echo
                else message
            )
            started = sent_at.pop(answer.client_order_id, None)
            room.release()
            if answer.WhichOneof("response") == "error":
                out.failed(str(answer.error.reason or answer.error.code), answer.error.message)
            elif started is not None:
                out.acked(time.perf_counter_ns() - started)
    except grpc.aio.AioRpcError as e:
        out.failed(f"stream {e.code().name}", e.details() or "")
        writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    for _ in sent_at:
        out.failed("NO_ANSWER", "the stream ended without an answer for it")


def _echoed_id(message: bytes) -> bytes:
    """The floor answers each OrderEntryRequest with an OrderEntryResponse of its id."""
    request = gateway_pb2.OrderEntryRequest.FromString(message)
    return gateway_pb2.OrderEntryResponse(
        client_order_id=request.place.client_order_id
    ).SerializeToString()


async def generate(load: Load) -> Samples:
    """Fund the accounts, then run the workers; the samples."""
    samples = Samples()
    channels = [
        grpc.aio.insecure_channel(load.target) for _ in range(max(1, load.connections // 8))
    ]
    try:
        for channel in channels:
            await channel.channel_ready()
        if not load.echo:
            await fund(channels[0], load)
        sender = Sender(load, samples)
        sender.begin()
        workers = []
        for n in range(load.connections):
            channel = channels[n % len(channels)]
            if load.entry == "stream":
                workers.append(stream_worker(load, channel, n, sender, samples))
            else:
                workers.append(unary_worker(load, channel, sender, samples))
        await asyncio.gather(*workers)
    finally:
        for channel in channels:
            await channel.close()
    return samples


async def run_load(load: Load) -> Samples:
    """Run `load` in a fresh process and wait for its samples."""
    return await in_own_process(
        generate, load, load.seconds + CLIENT_SECONDS_EXTRA, "stream-bench-load"
    )


# -- the floor (runs in a process of its own) ------------------------------------------------


async def _echo_unary(request: bytes, context: Any) -> bytes:  # noqa: ARG001 - gRPC's signature
    return request


async def _echo_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:  # noqa: ARG001
    async for request in requests:
        yield request


async def serve_echo(pipe: Connection) -> None:
    """A bare grpc.aio server with a unary and a bidi echo; sends its port, serves until told."""
    server = grpc.aio.server()
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(_echo_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_echo_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ECHO_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pipe.send(port)
    await asyncio.to_thread(pipe.recv)  # any message: stop
    await server.stop(1)


def echo_main(pipe: Connection) -> None:
    """The floor's process."""
    asyncio.run(serve_echo(pipe))


@contextlib.asynccontextmanager
async def echo_process() -> AsyncIterator[str]:
    """The floor in its own process (as the mesh is); yields its address."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=echo_main, args=(theirs,), name="stream-bench-floor")
    process.start()
    try:
        if not await asyncio.to_thread(ours.poll, 60):
            raise RuntimeError("the floor did not start within 60 s")
        yield f"127.0.0.1:{ours.recv()}"
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 10)


# -- the mesh (`ordermesh up` in a process of its own) ---------------------------------------


@dataclass
class Mesh:
    """One `ordermesh up` process on a data directory."""

    data_dir: Path
    kafka: str
    postgres: str
    profile: Path | None
    process: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        """Where clients call."""
        return f"127.0.0.1:{self.ports['gateway']}"

    def argv(self) -> list[str]:
        """`ordermesh up` with free ports (under cProfile with --profile)."""
        from tests.e2e.mesh_process import free_ports  # noqa: PLC0415 - the tests' helper

        names = ("gateway", "ubscore", "matcher", "settlement")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        flags = [f"--{name}-port={port}" for name, port in self.ports.items()]
        flags += [f"--data-dir={self.data_dir}", "--metrics-port=0"]
        if self.kafka:
            flags += [f"--kafka={self.kafka}", f"--postgres={self.postgres}"]
        command = [str(BIN), "up", *flags]
        if self.profile is not None:
            command = [sys.executable, "-m", "cProfile", "-o", str(self.profile), *command]
        return command

    async def start(self) -> None:
        """Start it; return once it printed "ordermesh is up"."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stderr = (self.data_dir.parent / "up.stderr").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv(), stdout=asyncio.subprocess.PIPE, stderr=stderr, env=_environment()
        )
        stderr.close()
        try:
            async with asyncio.timeout(UP_SECONDS):
                while not any(line.startswith("ordermesh is up") for line in self.lines):
                    line = await self._stdout().readline()
                    if not line:
                        raise RuntimeError(f"ordermesh up ended while starting: {self.output()}")
                    self.lines.append(line.decode().rstrip("\n"))
        except TimeoutError as e:
            raise RuntimeError(f"no 'ordermesh is up' in {UP_SECONDS} s: {self.output()}") from e

    async def stop(self) -> int | None:
        """Ctrl-C, as a user stops it; SIGKILL if it does not end in time."""
        if self.process is None or self.process.returncode is not None:
            return None
        self.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(STOP_SECONDS):
                while await self._stdout().readline():
                    pass
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the mesh's process used so far, PostgreSQL's excluded."""
        if self.process is None:
            raise RuntimeError("ordermesh up is not running")
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def _stdout(self) -> asyncio.StreamReader:
        if self.process is None or self.process.stdout is None:
            raise RuntimeError("ordermesh up is not running")
        return self.process.stdout

    def dsn(self) -> str:
        """The settlement database: --postgres, or the embedded server's (from its pid file)."""
        if self.postgres:
            return self.postgres
        from pgserver.utils import PostmasterInfo  # noqa: PLC0415 - only for the embedded one

        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        if info is None:
            raise RuntimeError("the embedded PostgreSQL has no postmaster.pid")
        return str(info.get_uri(database="ordermesh"))

    def output(self) -> str:
        """Its stdout so far and the tail of its stderr."""
        stderr = self.data_dir.parent / "up.stderr"
        tail = stderr.read_text(errors="replace")[-3000:] if stderr.exists() else ""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + tail


def _environment() -> dict[str, str]:
    """This environment without ORDERMESH_* settings that would change what `up` does."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDERMESH_")}


@dataclass
class Settled:
    """Polls of settlement: (time.time_ns(), orders of the run with the matcher's outcome)."""

    points: list[tuple[int, int]] = field(default_factory=list)
    complete_ns: int = 0
    """When the poll first saw every accepted order (0: not within SETTLE_SECONDS)."""


class SettlementWatch:
    """Polls the settlement database for the run's orders, from the first send on.

    An order is settled once its row holds the matcher's outcome (any status but
    PENDING_NEW, which is the NewOrder alone): NEW, PARTIALLY_FILLED, FILLED, ...
    """

    def __init__(self, dsn: str, run_id: str) -> None:
        self._dsn = dsn
        self._pattern = f"{run_id}-%"
        self._expected: int | None = None
        self._expected_at = 0.0
        self.settled = Settled()

    def expect(self, accepted: int) -> None:
        """The load is over: `accepted` orders must show up (within SETTLE_SECONDS)."""
        self._expected = accepted
        self._expected_at = time.monotonic()

    async def run(self) -> Settled:
        """Poll until the expected count is seen, or SETTLE_SECONDS after `expect`."""
        connection = await asyncpg.connect(self._dsn)
        try:
            while True:
                count = await connection.fetchval(
                    "SELECT count(*) FROM orders WHERE status <> $1 AND client_order_id LIKE $2",
                    PENDING_NEW,
                    self._pattern,
                )
                now = time.time_ns()
                self.settled.points.append((now, count))
                if self._expected is not None:
                    if count >= self._expected:
                        self.settled.complete_ns = now
                        return self.settled
                    if time.monotonic() - self._expected_at > SETTLE_SECONDS:
                        return self.settled
                await asyncio.sleep(POLL_SECONDS)  # polling a table on a clock
        finally:
            await connection.close()


# -- one run ---------------------------------------------------------------------------------


def figures(samples: Samples, settled: Settled | None) -> dict[str, Any]:
    """Rates, latency percentiles (µs) and errors of one run."""
    acked = len(samples.latencies)
    ack_span = max(samples.last_ack_ns - samples.first_send_ns, 1) / 1e9
    result: dict[str, Any] = {
        "sent": samples.sent,
        "accepted": acked,
        "errors": dict(samples.errors),
        "error_details": samples.error_details,
        "accepted_per_second": round(acked / ack_span, 1),
        "send_seconds": round((samples.last_send_ns - samples.first_send_ns) / 1e9, 3),
    }
    if samples.latencies:
        result["ack_latency"] = latency_summary(samples.latencies)
        last = max(samples.per_second)
        result["acks_by_second"] = [samples.per_second.get(n, 0) for n in range(last + 1)]
    if settled is not None:
        filled = settled.points[-1][1] if settled.points else 0
        result["settled"] = filled
        result["all_settled"] = bool(settled.complete_ns)
        end = settled.complete_ns or (settled.points[-1][0] if settled.points else 0)
        span = max(end - samples.first_send_ns, 1) / 1e9
        result["settled_per_second"] = round(filled / span, 1)
        result["settle_lag_seconds"] = round(max(end - samples.last_ack_ns, 0) / 1e9, 3)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


async def run_mode(mode: str, args: argparse.Namespace, load_of: Any, work: Path) -> dict[str, Any]:
    """Start the mesh of `mode`, drive it, wait for settlement, stop it; the figures.

    A run that fails is reported as such (with the mesh's output), and the bench goes on.
    """
    postgres = await new_database(args.postgres_server) if mode == "kafka" else ""
    profile = args.profile / f"{mode}.prof" if args.profile else None
    data = work / mode / "data"
    data.mkdir(parents=True)
    (data / "api_keys.toml").write_text(key_file(args.accounts))
    mesh = Mesh(data, args.kafka if mode == "kafka" else "", postgres, profile)
    try:
        await mesh.start()
        print(f"{mode}: ordermesh up serves at {mesh.gateway}; driving it", flush=True)
        return await drive(mesh, load_of(mesh.gateway, echo=False))
    except (RuntimeError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        print(f"{mode}: the run failed: {e}\n{mesh.output()[-2000:]}", flush=True)
        return {"failed": str(e), "mesh_output_tail": mesh.output()[-2000:]}
    finally:
        status = await mesh.stop()
        if status not in (0, None):
            print(f"{mode}: ordermesh up ended with status {status}: {mesh.output()[-1500:]}")


async def drive(mesh: Mesh, load: Load) -> dict[str, Any]:
    """Run `load` against `mesh` while watching settlement; the figures of the run."""
    watch = SettlementWatch(mesh.dsn(), load.run_id)
    watching = asyncio.create_task(watch.run())
    before, cpu = os.getloadavg(), mesh.cpu_seconds()
    try:
        samples = await run_load(load)
    except BaseException:
        watching.cancel()
        raise
    watch.expect(len(samples.latencies))
    settled = await watching
    used = mesh.cpu_seconds() - cpu  # until everything settled: settlement's share included
    result = figures(samples, settled)
    result["load_average_before"] = [round(x, 2) for x in before]
    result["mesh_cpu_seconds"] = round(used, 2)
    result["mesh_cpu_ms_per_order"] = round(1000 * used / max(len(samples.latencies), 1), 3)
    return result


async def new_database(server_dsn: str) -> str:
    """A fresh database on the bench's PostgreSQL server (dropped with the server)."""
    from tests.servers.postgres import (  # noqa: PLC0415 - only with a server to use
        create_database,
        new_database_name,
        with_database,
    )

    name = new_database_name()
    await create_database(server_dsn, name)
    return with_database(server_dsn, name)


@contextlib.contextmanager
def kafka_and_postgres(args: argparse.Namespace) -> Iterator[None]:
    """For the kafka mode: the broker and PostgreSQL server to use (given, or started here)."""
    if "kafka" not in args.modes:
        yield
        return
    with contextlib.ExitStack() as stack:
        if not args.kafka:
            from tests.servers.kafka import KafkaBroker, cache_dir, ensure_jars  # noqa: PLC0415

            broker = KafkaBroker(ensure_jars(cache_dir()))
            stack.callback(broker.stop)
            print("starting a Kafka broker ...", flush=True)
            args.kafka = broker.start()
        if not args.postgres_server:
            from tests.servers.postgres import EmbeddedPostgres  # noqa: PLC0415

            server = EmbeddedPostgres()
            stack.callback(server.stop)
            args.postgres_server = server.start()
        yield


def table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One line per run: rates, ACK latency (ms), errors, load average."""
    head = (
        f"{'run':<10}{'accepted/s':>12}{'settled/s':>11}{'ack p50':>9}{'ack p99':>9}"
        f"{'acked':>9}{'errors':>8}{'cpu ms/order':>14}  load avg"
    )
    lines = [head, "-" * (len(head) + 8)]
    for name, run in runs.items():
        if "failed" in run:
            lines.append(f"{name:<10}failed: {run['failed'][:80]}")
            continue
        latency = run.get("ack_latency", {})
        settled = run.get("settled_per_second")
        lines.append(
            f"{name:<10}{run['accepted_per_second']:>12.1f}"
            + (f"{settled:>11.1f}" if settled is not None else f"{'-':>11}")
            + f"{latency.get('p50_us', 0) / 1000:>9.2f}{latency.get('p99_us', 0) / 1000:>9.2f}"
            f"{run['accepted']:>9}{sum(run['errors'].values()):>8}"
            f"{run.get('mesh_cpu_ms_per_order', 0):>14.3f}  {run['load_average'][0]}"
        )
    lines.append(
        "(rates per second from the first send; ACK latency in ms from each send; cpu: the"
        " mesh process's CPU time per accepted order)"
    )
    return lines


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The floor, then each mode; the payload of bench/results/stream.json."""

    def load_of(target: str, *, echo: bool) -> Load:
        return Load(
            target, args.entry, echo, args.orders, args.seconds, args.connections,
            args.window, args.accounts, uuid.uuid4().hex[:8],
        )  # fmt: skip

    runs: dict[str, dict[str, Any]] = {}
    async with echo_process() as target:
        print(f"floor: echo server at {target}; driving it", flush=True)
        runs["floor"] = figures(await run_load(load_of(target, echo=True)), None)
    with (
        tempfile.TemporaryDirectory(prefix="ordermesh-stream-bench-") as directory,
        kafka_and_postgres(args),
    ):
        for mode in args.modes:
            runs[mode] = await run_mode(mode, args, load_of, Path(directory))
    floor = runs["floor"]["accepted_per_second"]
    return {
        "config": {
            "entry": "OrderEntry streams" if args.entry == "stream" else "unary PlaceOrder",
            "connections": args.connections,
            "window": args.window if args.entry == "stream" else 1,
            "orders": args.orders,
            "seconds": args.seconds,
            "accounts": args.accounts,
            "flow": f"{SYMBOL} LIMIT GTC ACK, SELL 0.01 @ 100 / BUY 0.01 @ 101 in turn",
            "mesh": "`ordermesh up` subprocess (one process, all four services)",
            "kafka": "given" if args.kafka_given else "started by the bench (single KRaft node)",
            "floor": "bare grpc.aio echo in its own process, same load process and shape",
            "goal_orders_per_second": 10_000,
        },
        "floor": runs["floor"],
        "runs": {mode: runs[mode] for mode in args.modes},
        "ratios_to_floor": {
            mode: round(runs[mode]["accepted_per_second"] / floor, 3)
            for mode in args.modes
            if floor and "failed" not in runs[mode]
        },
        "table": table(runs),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; --help says what the bench does."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n    ")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--entry", choices=ENTRIES, default="stream", help="how orders go in")
    parser.add_argument("--orders", type=int, default=40_000, help="at most this many orders")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long sending")
    parser.add_argument(
        "--connections", type=int, default=256, help="OrderEntry streams (or unary callers)"
    )
    parser.add_argument("--window", type=int, default=8, help="orders in flight per stream")
    parser.add_argument(
        "--accounts", type=int, default=256, help="trader accounts the orders are spread over"
    )
    parser.add_argument("--kafka", default="", help="bootstrap HOST:PORT; empty: start a broker")
    parser.add_argument(
        "--postgres-server",
        default="",
        help="DSN of a PostgreSQL the kafka mode may create a database on; empty: pgserver",
    )
    parser.add_argument("--profile", type=Path, help="run the mesh under cProfile into this dir")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes takes {', '.join(MODES)}; was {unknown or 'empty'}")
    if min(args.orders, args.connections, args.window, args.accounts) <= 0 or args.seconds <= 0:
        parser.error("--orders, --seconds, --connections, --window, --accounts must be positive")
    if args.accounts < 2:
        parser.error("--accounts must be at least 2: a pair trades between two accounts")
    args.kafka_given = bool(args.kafka)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    """Measure, print the table, write bench/results/stream.json."""
    args = parse()
    payload = asyncio.run(bench(args))
    print()
    print("\n".join(payload["table"]))
    for mode, ratio in payload["ratios_to_floor"].items():
        print(f"{mode}: accepted/s x{ratio} of the floor's")
    for name, run in {"floor": payload["floor"], **payload["runs"]}.items():
        for code, detail in run.get("error_details", {}).items():
            print(f"{name}: {run['errors'][code]} x {code}, e.g. {detail[:200]!r}")
    if not args.no_write:
        print(f"wrote {write_result('stream', payload)}")


if __name__ == "__main__":
    main()
