"""PlaceOrder latency through the gateway, with the whole mesh in this process on a MemoryBus.

Not a test: a quick, bounded measurement. It starts ubscore, the matcher, settlement (on an
embedded PostgreSQL, or the one --postgres names) and the gateway, funds two accounts, then
places N orders one after another from one client: pairs of a resting SELL and a BUY that
takes it, so the matcher and settlement work as the calls go. Prints one JSON line with the
percentiles of the client-side latency of each PlaceOrder.

    .venv/bin/python -m tests.integration.gateway.latency --orders 2000
    .venv/bin/python -m tests.integration.gateway.latency --orders 2000 --response result
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from ordermesh.telemetry import configure_logging
from ordermesh.v1 import common_pb2
from tests.integration.gateway.harness import deposit, limit, mesh, place, write_key_file
from tests.servers.postgres import (
    EmbeddedPostgres,
    create_database,
    new_database_name,
    with_database,
)


def percentile(ordered: list[float], fraction: float) -> float:
    """The value at `fraction` of an ascending list (nearest rank)."""
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


async def measure(dsn: str, orders: int, result: bool) -> dict[str, object]:
    """Place `orders` orders through a fresh mesh; return the latency figures in ms."""
    with tempfile.TemporaryDirectory() as directory:
        keys = write_key_file(Path(directory) / "keys.toml")
        async with mesh(dsn, keys, rate_per_second=1e9, burst=10**9) as started:
            seller, buyer = started.accounts(2)
            await deposit(started, seller, "BTC", "1000")
            await deposit(started, buyer, "USDT", "10000000")
            took: list[float] = []
            for i in range(orders):
                account, side = (
                    (seller, common_pb2.SIDE_SELL) if i % 2 == 0 else (buyer, common_pb2.SIDE_BUY)
                )
                request = limit(side, "100", "0.01", f"o{i}", result=result)
                begun = time.perf_counter()
                await place(started, account, request)
                took.append((time.perf_counter() - begun) * 1000)
    took.sort()
    return {
        "response_type": "RESULT" if result else "ACK",
        "orders": orders,
        "p50_ms": round(percentile(took, 0.50), 3),
        "p90_ms": round(percentile(took, 0.90), 3),
        "p99_ms": round(percentile(took, 0.99), 3),
        "max_ms": round(took[-1], 3),
        "mean_ms": round(statistics.fmean(took), 3),
    }


async def main() -> None:
    """Parse the flags, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--response", choices=("ack", "result"), default="ack")
    parser.add_argument("--postgres", default="", help="a server DSN; embedded when empty")
    args = parser.parse_args()
    configure_logging("warning", "console")
    server = None
    dsn = args.postgres
    if not dsn:
        server = EmbeddedPostgres()
        dsn = server.start()
    try:
        name = new_database_name()
        await create_database(dsn, name)
        figures = await measure(with_database(dsn, name), args.orders, args.response == "result")
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(figures))  # the figures are the output


if __name__ == "__main__":
    asyncio.run(main())
