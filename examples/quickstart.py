"""Trade in a minute with the Python SDK: fund, trade, watch the book, be refused.

Run `make run` in one terminal, then in another: `.venv/bin/python examples/quickstart.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from decimal import Decimal
from pathlib import Path

from ordermesh.client import AsyncClient, ClientError, InvalidArgument, LocalBook


async def tour(gateway: str, keys: dict[str, str]) -> None:
    """Deposit, rest a SELL, watch the book, cross it, cancel the rest, show a refusal."""
    async with (
        AsyncClient(gateway, api_key=keys["admin"]) as admin,
        AsyncClient(gateway, api_key=keys["demo-trader-1"]) as alice,
        AsyncClient(gateway, api_key=keys["demo-trader-2"]) as bob,
    ):
        # Money enters by deposit (admin key). The reference_id makes a retry safe:
        # the same reference_id credits once, and the answer says duplicate.
        await admin.deposit(1, "BTC", Decimal("1"), reference_id="tour-alice-btc")
        again = await admin.deposit(1, "BTC", Decimal("1"), reference_id="tour-alice-btc")
        print("deposit again is a duplicate:", again.duplicate)
        await admin.deposit(2, "USDT", Decimal("50000"), reference_id="tour-bob-usdt")

        # Market data: a snapshot, then every change; a LocalBook keeps the depth.
        events = bob.market_data("BTC-USDT", depth=5)
        book = LocalBook("BTC-USDT")
        book.apply(await anext(events))  # the first event is always a BookSnapshot

        # A resting SELL: amounts are Decimal (or str); a float is refused.
        sell = await alice.place_order("BTC-USDT", "SELL", Decimal("0.5"), Decimal("30000"))
        print("alice's sell:", sell.status)

        # A crossing BUY, waiting for the matcher's result with its fills.
        buy = await bob.place_order("BTC-USDT", "BUY", "0.2", "30100", wait="result")
        print("bob's buy:", buy.status)
        for fill in buy.fills:
            print(f"  filled {fill.quantity} at {fill.price}, fee {fill.fee} {fill.fee_asset}")

        want = await bob.get_order_book("BTC-USDT", 5)
        while book.sequence < want.sequence:
            book.apply(await anext(events))
        await events.aclose()  # type: ignore[attr-defined]  # an async generator
        best = book.best_ask()
        print("best ask:", best.quantity if best else None, "at", best.price if best else None)

        canceled = await alice.cancel_order("BTC-USDT", sell.order_id, wait="result")
        print("alice's rest:", canceled.status)
        for asset, balance in sorted((await bob.get_balances()).items()):
            print(f"  bob holds {balance.available} {asset} ({balance.frozen} frozen)")

        # Every refusal is a ClientError subclass with the gateway's reason and field.
        try:
            await bob.place_order("BTC-USDT", "BUY", "0.1", "30000.001")
        except InvalidArgument as e:
            print("refused:", e.reason, e.field, "-", e.message)
        except ClientError as e:  # any other refusal
            print("refused otherwise:", e)


def main() -> None:
    """Read the demo keys `ordermesh up` wrote and run the tour."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="the gateway's address")
    parser.add_argument("--data-dir", type=Path, default=Path(".ordermesh"), help="up's data dir")
    args = parser.parse_args()
    keys_file = (args.data_dir / "api_keys.toml").read_text(encoding="utf-8")
    keys = {entry["name"]: entry["key"] for entry in tomllib.loads(keys_file)["keys"]}
    asyncio.run(tour(args.gateway, keys))


if __name__ == "__main__":
    main()
