"""Commands per second through the matcher service, on the in-memory bus or on Kafka.

Not a test: a quick, bounded measurement. It logs N seeded commands over five symbols to
ordermesh.orders first, then starts one matcher in this process and times it from SERVING
until the group has committed the last command (every event sent, every transaction
committed). Prints one JSON line.

    .venv/bin/python -m tests.integration.matcher.throughput --bus memory --commands 20000
    .venv/bin/python -m tests.integration.matcher.throughput --bus kafka \
        --kafka 127.0.0.1:9092 --commands 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

from ordermesh.bus import topics
from ordermesh.bus.base import Bus, TopicSpec
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus
from ordermesh.snapshots import SNAPSHOTS
from ordermesh.telemetry import configure_logging
from tests.integration.matcher.harness import (
    PARTITIONS,
    SYMBOLS,
    produce,
    running,
    settings,
    straight_run,
    stream,
    wait_processed,
    write_markets,
)
from tests.servers.kafka import delete_topics


async def measure(bus: Bus, commands: int, max_batch: int) -> dict[str, object]:
    """Log `commands` commands, then time one matcher through all of them."""
    prefix = f"tp{uuid.uuid4().hex[:8]}."
    orders = prefix + topics.ORDERS
    await bus.create_topics([TopicSpec(orders, PARTITIONS)])
    per_symbol = max(commands // len(SYMBOLS), 1)
    produced = await produce(bus, orders, stream(seed=42, per_symbol=per_symbol))
    events = sum(len(e) for e in straight_run(produced).values())
    with tempfile.TemporaryDirectory() as directory:
        config = settings(prefix, write_markets(Path(directory)), max_batch=max_batch)
        async with running(bus, config) as (service, _):
            started = time.perf_counter()
            await wait_processed(bus, config.group_id, orders, produced, seconds=600)
            seconds = time.perf_counter() - started
            transactions = service.metrics.value("ordermesh_matcher_transaction_seconds_count")
    return {
        "bus": type(bus).__name__,
        "commands": len(produced),
        "events": events,
        "max_batch": max_batch,
        "transactions": int(transactions),
        "seconds": round(seconds, 3),
        "commands_per_second": round(len(produced) / seconds),
        "events_per_second": round(events / seconds),
        "prefix": prefix,
    }


async def main() -> None:
    """Parse the flags, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--bus", choices=("memory", "kafka"), default="memory")
    parser.add_argument("--kafka", default="", help="bootstrap servers, for --bus kafka")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--max-batch", type=int, default=500)
    args = parser.parse_args()
    configure_logging("warning", "console")
    bus: Bus = MemoryBus() if args.bus == "memory" else KafkaBus(args.kafka)
    try:
        figures = await measure(bus, args.commands, args.max_batch)
    finally:
        await bus.close()
    print(json.dumps(figures))  # the figures are the output
    if args.bus == "kafka":
        prefix = str(figures["prefix"])
        names = [prefix + topics.ORDERS, prefix + topics.ENGINE, prefix + SNAPSHOTS]
        await delete_topics(args.kafka, names)


if __name__ == "__main__":
    asyncio.run(main())
