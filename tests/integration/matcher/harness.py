"""Shared pieces of the matcher service tests: markets, command streams, the log, the oracle.

Commands are made by hand, as ubscore would log them (encode_command, key = symbol). What
the matcher published is read back from ordermesh.engine with a read_committed consumer and
compared, byte for byte, with a straight run of a fresh MatchingEngine over the same
commands at the same offsets. Waits are conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from matcher.bootstrap import MatcherService, MatcherSettings, build
from matcher.core import ChainVerifier, MatchingEngine
from ordermesh.bus import topics
from ordermesh.bus.base import Bus, Record, TopicPartition
from ordermesh.codec import decode_engine_event, encode_command, encode_engine_event
from ordermesh.events import EngineEvent, OrderCommand
from ordermesh.grpcx.errors import reason_of
from ordermesh.markets import MarketTable, parse_markets
from ordermesh.model import OrderId, RejectReason, Symbol
from ordermesh.v1 import matcher_pb2 as pb
from ordermesh.v1 import matcher_pb2_grpc
from tests import waiting
from tests.unit.matcher.streams import seeded_stream

DEADLINE_SECONDS = 60.0
POLL_SECONDS = 0.05

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT")
"""With 4 partitions they live in partitions 2, 1, 1, 3 and 0: every partition has one, and
one partition has two."""
PARTITIONS = 4

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Produced = list[tuple[OrderCommand, Record]]


def markets_toml() -> str:
    """Five USDT markets on the BTC-USDT grid of config/markets.toml (the streams' grid)."""
    assets = "".join(
        f'[[assets]]\ncode = "{code}"\nscale = {scale}\n\n'
        for code, scale in (("USDT", 6), *((s.split("-")[0], 8) for s in SYMBOLS))
    )
    symbols = "".join(
        f'[[symbols]]\nname = "{symbol}"\nbase = "{symbol.split("-")[0]}"\nquote = "USDT"\n'
        'tick_size = "0.01"\nlot_size = "0.0001"\nmin_qty = "0.0001"\nmin_notional = "1"\n'
        "maker_fee_bps = 10\ntaker_fee_bps = 20\n\n"
        for symbol in SYMBOLS
    )
    return assets + symbols


MARKETS: MarketTable = parse_markets(markets_toml(), "test markets")


def write_markets(directory: Path) -> Path:
    """The test markets as a file, for `--markets`."""
    path = directory / "markets.toml"
    path.write_text(markets_toml())
    return path


def settings(prefix: str, markets: Path, **overrides: Any) -> MatcherSettings:
    """Matcher settings with every name unique to one test, on free ports."""
    values: dict[str, Any] = {
        "markets": markets,
        "port": 0,
        "metrics_port": 0,
        "topic_prefix": prefix,
        "group_id": f"{prefix}matcher",
        "transactional_id_prefix": prefix.rstrip("."),
        "partitions": PARTITIONS,
        "snapshot_every": 10_000,
        "grace_seconds": 2.0,
        "probe_seconds": 0.5,
        "log_format": "console",
    }
    values.update(overrides)
    return MatcherSettings(**values)


def stream(seed: int, per_symbol: int, symbols: Sequence[str] = SYMBOLS) -> list[OrderCommand]:
    """`per_symbol` seeded commands of each symbol, interleaved at random (seeded too).

    Order ids are unique over all symbols, as ubscore assigns them.
    """
    rng = random.Random(seed)
    queues = [
        [_moved(command, symbol, (index + 1) * 1_000_000)
         for command in seeded_stream(seed * 100 + index, per_symbol)]
        for index, symbol in enumerate(symbols)
    ]  # fmt: skip
    out: list[OrderCommand] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        out.append(queue.pop(0))
    return out


def _moved(command: OrderCommand, symbol: str, base: int) -> OrderCommand:
    order_id = OrderId(command.order_id + base) if command.order_id else command.order_id
    return dataclasses.replace(command, symbol=Symbol(symbol), order_id=order_id)


async def produce(bus: Bus, topic: str, commands: Sequence[OrderCommand]) -> Produced:
    """Log `commands` as ubscore does (key = symbol); each with the record the log made."""
    producer = bus.producer()
    await producer.start()
    produced: Produced = []
    try:
        for start in range(0, len(commands), 200):
            chunk = commands[start : start + 200]
            records = await asyncio.gather(
                *(producer.send(topic, encode_command(c), key=c.symbol.encode()) for c in chunk)
            )
            produced.extend(zip(chunk, records, strict=True))
    finally:
        await producer.stop()
    return produced


def straight_run(
    produced: Produced, markets: MarketTable = MARKETS
) -> dict[str, list[EngineEvent]]:
    """What a fresh engine emits for the logged commands, per symbol, in log order."""
    engine = MatchingEngine(markets.markets.values())
    events: dict[str, list[EngineEvent]] = defaultdict(list)
    for command, record in sorted(produced, key=lambda p: (p[1].partition, p[1].offset)):
        events[command.symbol].extend(engine.apply(command, record.offset))
    return dict(events)


def end_offsets(produced: Produced) -> dict[int, int]:
    """Per orders partition, the offset after the last command logged."""
    ends: dict[int, int] = {}
    for _, record in produced:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


eventually = functools.partial(
    waiting.eventually, seconds=DEADLINE_SECONDS, poll_seconds=POLL_SECONDS
)
"""Wait for a condition with this file's deadline and poll interval."""


async def committed_offsets(bus: Bus, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of `topic` (missing: none)."""
    count = await bus.partitions(topic)
    consumer = bus.consumer(group_id=group_id)
    partitions = [TopicPartition(topic, p) for p in range(count)]
    consumer.assign(partitions)
    await consumer.start()
    try:
        found = {tp.partition: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    return {p: offset for p, offset in found.items() if offset is not None}


async def wait_processed(
    bus: Bus, group_id: str, topic: str, produced: Produced, seconds: float = DEADLINE_SECONDS
) -> None:
    """Wait until the group has committed every logged command of `produced`."""
    wanted = end_offsets(produced)
    await eventually(
        lambda: committed_offsets(bus, group_id, topic),
        lambda found: all(found.get(p, 0) >= end for p, end in wanted.items()),
        what=f"group {group_id} commits {wanted}",
        seconds=seconds,
    )


async def read_engine(bus: Bus, topic: str) -> dict[str, list[Record]]:
    """Everything committed to the engine topic, per key (symbol), in log order."""
    count = await bus.partitions(topic)
    partitions = [TopicPartition(topic, p) for p in range(count)]
    consumer = bus.consumer(read_committed=True)
    consumer.assign(partitions)
    await consumer.start()
    by_symbol: dict[str, list[Record]] = defaultdict(list)
    try:
        ends = await consumer.end_offsets(partitions)
        for tp, start in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while not all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
            assert loop.time() < deadline, f"engine topic not read up to {ends} in time"
            for record in await consumer.getmany(timeout_ms=200):
                assert record.key is not None
                by_symbol[record.key.decode()].append(record)
    finally:
        await consumer.stop()
    return dict(by_symbol)


def check_exact(published: dict[str, list[Record]], expected: dict[str, list[EngineEvent]]) -> int:
    """Assert the engine topic holds exactly the straight run; return the events checked.

    Per symbol: the same bytes in the same order (so every event once: no gap, no
    duplicate), sequence numbers 1..n, and a hash chain that verifies end to end.
    """
    assert sorted(published) == sorted(expected), "symbols published differ from the run"
    total = 0
    for symbol, records in published.items():
        events = [decode_engine_event(record.value) for record in records]
        sequences = [event.sequence for event in events]
        assert sequences == list(range(1, len(events) + 1)), (
            f"{symbol}: sequence not 1..{len(events)}: {_first_break(sequences)}"
        )
        verifier = ChainVerifier(symbol=symbol)
        for event in events:
            verifier.add(event)
        verifier.close()
        wanted = [encode_engine_event(event) for event in expected[symbol]]
        assert len(records) == len(wanted), (
            f"{symbol}: {len(records)} events, run has {len(wanted)}"
        )
        assert [record.value for record in records] == wanted, f"{symbol}: events differ"
        total += len(records)
    return total


def _first_break(sequences: list[int]) -> str:
    for index, sequence in enumerate(sequences):
        if sequence != index + 1:
            return f"at index {index}: {sequences[max(index - 2, 0) : index + 3]}"
    return "none"


@contextlib.asynccontextmanager
async def running(
    bus: Bus, config: MatcherSettings, *, wait: bool = True
) -> AsyncIterator[tuple[MatcherService, asyncio.Task[int]]]:
    """A matcher in this process: started, run as a task, stopped (gracefully) on exit."""
    service = build(config, bus, markets=MARKETS)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        if wait:
            await serving(service, task)
        yield service, task
    finally:
        if not task.done():
            await service.stop()
        await asyncio.wait_for(asyncio.shield(task), DEADLINE_SECONDS)


async def serving(service: MatcherService, task: asyncio.Task[int]) -> None:
    """Wait until `service` says SERVING; fail early if it stopped instead."""
    waiter = asyncio.ensure_future(service.wait_serving())
    done, _ = await asyncio.wait({waiter, task}, timeout=DEADLINE_SECONDS,
                                 return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    if waiter not in done:
        waiter.cancel()
        outcome = task.result() if task in done else "still not serving"
        raise AssertionError(f"matcher did not become SERVING: {outcome}")


def orders_topic(prefix: str) -> str:
    return prefix + topics.ORDERS


def engine_topic(prefix: str) -> str:
    return prefix + topics.ENGINE


@contextlib.asynccontextmanager
async def matcher_stub(port: int) -> AsyncIterator[matcher_pb2_grpc.MatcherAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield matcher_pb2_grpc.MatcherStub(channel)


async def health_status(port: int) -> int:
    """The overall health of the server on `port` (NOT_SERVING when it cannot be reached)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package omits its methods
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.aio.AioRpcError:
            return int(NOT_SERVING)
        return int(reply.status)


async def serves(stub: matcher_pb2_grpc.MatcherAsyncStub, symbol: str) -> bool:
    """Whether the instance behind `stub` answers for `symbol`; if not, it says UNAVAILABLE."""
    call = stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol=symbol), timeout=5)
    try:
        await call
    except grpc.aio.AioRpcError as e:
        failure = e
    else:
        return True
    assert failure.code() == grpc.StatusCode.UNAVAILABLE, failure.details()
    assert await reason_of(call) == RejectReason.UNAVAILABLE
    assert symbol in (failure.details() or "")
    return False


async def owners(*ports: int) -> dict[str, list[int]]:
    """For each symbol, the indexes of the servers (by gRPC port) that answer for it."""
    found: dict[str, list[int]] = {symbol: [] for symbol in SYMBOLS}
    for index, port in enumerate(ports):
        async with matcher_stub(port) as stub:
            for symbol in SYMBOLS:
                if await serves(stub, symbol):
                    found[symbol].append(index)
    return found


def split_between_two(found: dict[str, list[int]]) -> bool:
    """Every symbol has exactly one owner, and both instances own some."""
    return all(len(o) == 1 for o in found.values()) and {i for o in found.values() for i in o} == {
        0,
        1,
    }
