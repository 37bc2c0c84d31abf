"""The `ordermesh` command as a user runs it: a process against one `ordermesh up` per module.

| command                         | checked against                                   |
|---------------------------------|---------------------------------------------------|
| deposit (twice, same reference) | balances --json: credited once                    |
| order place (crossing)          | order get / trades / trades --mine / list --json  |
| order cancel                    | order get --json: CANCELED; funds released        |
| book --once / --json            | the orders resting                                |
| demo --duration 5               | trades --json shows its trades; no order left     |
| errors                          | exit 1 + field; 2 usage; 3 unreachable; no trace  |
| book on a stream-less gateway   | polls GetOrderBook/ListTrades and says so         |
| --help of every command         | exit 0, with examples                             |
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from ordermesh import demo
from ordermesh.cli.app import COMMANDS
from ordermesh.v1 import gateway_pb2 as api
from ordermesh.v1 import gateway_pb2_grpc
from tests.e2e.mesh_process import (
    BIN,
    Completed,
    Up,
    clean_environment,
    eventually,
    free_ports,
    run_command,
    running_mesh,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

D = Decimal
RUN_SECONDS = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def up() -> AsyncIterator[Up]:
    async with running_mesh("ordermesh-cli-") as process:
        yield process


async def ordermesh(*args: str, **kwargs: Any) -> Completed:
    """Run the `ordermesh` binary; no run may print a traceback."""
    env = {"COLUMNS": "160", **kwargs.pop("env", {})}
    run = await run_command(str(BIN), *args, seconds=RUN_SECONDS, env=env)
    assert "Traceback" not in run.stderr + run.stdout, run
    return run


async def as_key(up: Up, key: str, *args: str) -> Completed:
    """`ordermesh --target GATEWAY --data-dir DATA --key KEY ARGS...`."""
    return await ordermesh(
        "--target", up.gateway, "--data-dir", str(up.data_dir), "--key", key, *args
    )


async def ok(up: Up, key: str, *args: str) -> Any:
    """Run with --json, expect exit 0, return the parsed output."""
    run = await as_key(up, key, *args, "--json")
    assert run.status == 0, run
    return run.json()


async def settled(up: Up, key: str, *args: str) -> Any:
    """`ok`, once settlement (which follows the log a moment behind) has the order."""

    async def attempt() -> Completed:
        return await as_key(up, key, *args, "--json")

    run = await eventually(attempt, lambda r: r.status == 0, what=" ".join(args))
    return run.json()


# --- help -------------------------------------------------------------------------------

HELP_PATHS = [
    [],
    *([name] for name in COMMANDS),
    ["order", "place"],
    ["order", "cancel"],
    ["order", "get"],
    ["order", "list"],
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "ordermesh")
async def test_every_command_has_a_help_with_examples(path: list[str]) -> None:
    run = await ordermesh(*path, "--help")
    assert run.status == 0, run
    assert "Usage: ordermesh" in run.stdout
    assert "Example" in run.stdout, run.stdout


async def test_up_keeps_its_flags_and_their_environment_variables() -> None:
    run = await ordermesh("up", "--help")
    for flag in ("--data-dir", "--gateway-port", "--metrics-port", "--fsync", "--kafka"):
        assert flag in run.stdout
    assert "[env ORDERMESH_DATA_DIR]" in run.stdout
    bad = await ordermesh("up", "--gateway-port", "many")
    assert bad.status == 2
    assert "--gateway-port='many' is not valid" in bad.stderr


# --- funding and orders ---------------------------------------------------------------


async def test_a_deposit_shows_in_the_balances_once(up: Up) -> None:
    first = await ok(up, "admin", "deposit", "1", "ETH", "3", "--reference-id", "cli-eth-1")
    assert first == {
        "reference_id": "cli-eth-1",
        "duplicate": False,
        "balance": {"asset": "ETH", "available": "3", "frozen": "0"},
    }
    again = await ok(up, "admin", "deposit", "1", "ETH", "3", "--reference-id", "cli-eth-1")
    assert again["duplicate"] is True
    rows = await ok(up, "demo-trader-1", "balances")
    assert {"asset": "ETH", "available": "3", "frozen": "0", "total": "3"} in rows
    human = await as_key(up, "admin", "deposit", "1", "ETH", "3", "--reference-id", "cli-eth-1")
    assert "already done before with this reference" in human.stdout


async def test_crossing_orders_trade_and_every_read_shows_it(up: Up) -> None:
    await ok(up, "admin", "deposit", "1", "BTC", "1", "--reference-id", "cli-btc-1")
    await ok(up, "admin", "deposit", "2", "USDT", "50000", "--reference-id", "cli-usdt-2")
    ask = await ok(
        up, "demo-trader-1", "order", "place", "BTC-USDT", "sell", "0.5", "--price", "30000",
        "--client-order-id", "cli-ask-1",
    )  # fmt: skip
    assert (ask["status"], ask["client_order_id"], ask["fills"]) == ("NEW", "cli-ask-1", [])
    bid = await ok(
        up, "demo-trader-2", "order", "place", "BTC-USDT", "BUY", "0.2", "--price", "30100",
    )  # fmt: skip
    assert (bid["status"], bid["filled_quantity"]) == ("FILLED", "0.2")
    (fill,) = bid["fills"]
    assert (fill["price"], fill["quantity"], fill["fee"], fill["fee_asset"]) == (
        "30000", "0.2", "0.0004", "BTC",
    )  # fmt: skip
    assert fill["maker"] is False

    order = await settled(up, "demo-trader-1", "order", "get", "--client-order-id", "cli-ask-1")
    assert (order["order_id"], order["status"], order["filled_quantity"]) == (
        ask["order_id"], "PARTIALLY_FILLED", "0.2",
    )  # fmt: skip
    by_id = await ok(up, "demo-trader-1", "order", "get", str(ask["order_id"]))
    assert by_id["client_order_id"] == "cli-ask-1"

    async def public() -> Any:
        return await ok(up, "demo-trader-1", "trades", "BTC-USDT")

    tape = await eventually(
        public, lambda t: any(x["trade_id"] == fill["trade_id"] for x in t), what="the trade"
    )
    trade = next(x for x in tape if x["trade_id"] == fill["trade_id"])
    assert (trade["price"], trade["quantity"], trade["taker_side"]) == ("30000", "0.2", "BUY")
    mine = await ok(up, "demo-trader-1", "trades", "--mine", "BTC-USDT")
    assert [(t["trade_id"], t["side"], t["maker"]) for t in mine] == [
        (fill["trade_id"], "SELL", True)
    ]
    opened = await ok(up, "demo-trader-1", "order", "list", "--open", "--symbol", "BTC-USDT")
    assert [o["order_id"] for o in opened] == [ask["order_id"]]

    async def history() -> Any:
        return await ok(up, "demo-trader-2", "order", "list", "--symbol", "BTC-USDT")

    listed = await eventually(
        history, lambda orders: any(o["order_id"] == bid["order_id"] for o in orders), what="bid"
    )
    assert next(o for o in listed if o["order_id"] == bid["order_id"])["status"] == "FILLED"

    await book_shows_the_resting_ask(up)

    canceled = await ok(up, "demo-trader-1", "order", "cancel", "BTC-USDT", str(ask["order_id"]))
    assert canceled["status"] == "CANCELED"
    rows = await ok(up, "demo-trader-1", "balances")
    assert {"asset": "BTC", "available": "0.8", "frozen": "0", "total": "0.8"} in rows


async def book_shows_the_resting_ask(up: Up) -> None:
    frame = await ok(up, "demo-trader-1", "book", "BTC-USDT", "--depth", "5")
    assert frame["asks"] == [{"price": "30000", "quantity": "0.3", "order_count": 1}]
    assert frame["trades"][0]["price"] == "30000"
    once = await as_key(up, "demo-trader-1", "book", "BTC-USDT", "--once")
    assert once.status == 0, once
    assert "BTC-USDT" in once.stdout
    ask_row = next(line for line in once.stdout.splitlines() if "ask" in line)
    assert "30000" in ask_row
    assert "0.3" in ask_row


# --- errors --------------------------------------------------------------------------------


async def test_a_bad_price_is_refused_naming_the_field(up: Up) -> None:
    args = ("order", "place", "BTC-USDT", "buy", "0.1", "--price", "30000.001")
    run = await as_key(up, "demo-trader-2", *args)
    assert run.status == 1
    assert "INVALID_PRICE" in run.stderr
    assert "field: price" in run.stderr
    assert "price has 3 decimals, tick 0.01 allows 2, was 30000.001" in run.stderr
    as_json = await as_key(up, "demo-trader-2", *args, "--json")
    assert as_json.status == 1
    error = json.loads(as_json.stderr)["error"]
    assert (error["code"], error["reason"], error["metadata"]) == (
        "INVALID_ARGUMENT", "INVALID_PRICE", {"field": "price"},
    )  # fmt: skip


async def test_refusals_exit_1_with_the_reason(up: Up) -> None:
    funds = await as_key(
        up, "demo-trader-1", "order", "place", "ETH-USDT", "buy", "1000", "--price", "2000"
    )
    assert (funds.status, "INSUFFICIENT_FUNDS" in funds.stderr) == (1, True), funds
    trader_funding = await as_key(up, "demo-trader-1", "deposit", "1", "USDT", "5")
    assert trader_funding.status == 1
    assert "needs an admin key" in trader_funding.stderr
    keyless = await ordermesh("--target", up.gateway, "balances")
    assert keyless.status == 1
    assert "UNAUTHENTICATED" in keyless.stderr
    assert "--key NAME" in keyless.stderr
    missing = await as_key(up, "demo-trader-1", "order", "get", "999999")
    assert (missing.status, "UNKNOWN_ORDER" in missing.stderr) == (1, True), missing


async def test_usage_errors_exit_2(up: Up) -> None:
    not_a_number = await as_key(up, "demo-trader-1", "order", "place", "BTC-USDT", "buy", "x")
    assert not_a_number.status == 2
    assert "'x' is not a decimal number" in not_a_number.stderr
    unknown_key = await as_key(up, "nobody", "balances")
    assert unknown_key.status == 2
    assert "no key named 'nobody'" in unknown_key.stderr
    assert "demo-trader-1" in unknown_key.stderr  # the names it could have been
    neither = await as_key(up, "demo-trader-1", "order", "get")
    assert neither.status == 2
    assert (await ordermesh()).status == 2


async def test_an_unreachable_gateway_exits_3() -> None:
    (port,) = free_ports(1)
    run = await ordermesh("--target", f"127.0.0.1:{port}", "--api-key", "k" * 20, "balances")
    assert run.status == 3
    assert f"cannot reach the gateway at 127.0.0.1:{port}" in run.stderr
    assert "ordermesh up" in run.stderr


# --- demo --------------------------------------------------------------------------------


async def test_the_demo_trades_and_leaves_no_order_behind(up: Up) -> None:
    before = await ok(up, "demo-trader-1", "trades", "ETH-USDT")
    run = await ordermesh(
        "--target", up.gateway, "--data-dir", str(up.data_dir),
        "demo", "--duration", "5", "--symbol", "ETH-USDT", "--seed", "7", "--json",
    )  # fmt: skip
    assert run.status == 0, run
    summary = run.json()
    assert summary["trades"] > 0, summary
    assert [bot["name"] for bot in summary["bots"]] == ["demo-trader-1", "demo-trader-2"]

    async def tape() -> Any:
        return await ok(up, "demo-trader-1", "trades", "ETH-USDT", "--limit", "1000")

    await eventually(
        tape, lambda t: len(t) >= len(before) + summary["trades"], what="the demo's trades"
    )
    for key in ("demo-trader-1", "demo-trader-2"):
        left = await ok(up, key, "order", "list", "--open", "--symbol", "ETH-USDT")
        assert [o for o in left if o["client_order_id"].startswith("demo-")] == []
    again = await ordermesh(
        "--target", up.gateway, "--data-dir", str(up.data_dir),
        "demo", "--duration", "1", "--symbol", "ETH-USDT",
    )  # fmt: skip
    assert again.status == 0, again
    assert "demo done:" in again.stdout
    assert "ETH-USDT" in again.stdout  # the last frame of the live view


async def test_the_demo_without_a_mesh_says_how_to_start_one(tmp_path: Path) -> None:
    run = await ordermesh("--data-dir", str(tmp_path), "demo", "--duration", "1")
    assert run.status == 3
    assert "no running `ordermesh up` found" in run.stderr
    assert "make run" in run.stderr


# --- book on a gateway without streams -------------------------------------------------------


class UnaryOnlyGateway(gateway_pb2_grpc.GatewayServicer):
    """A gateway serving only the two reads the book polls; its streams are UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.polls = 0

    async def GetOrderBook(self, request: Any, context: Any) -> api.GetOrderBookResponse:
        self.polls += 1
        level = api.PriceLevel(price="2000.5", quantity="1.25", order_count=2)
        return api.GetOrderBookResponse(symbol=request.symbol, sequence=9, bids=[level])

    async def ListTrades(self, request: Any, context: Any) -> api.ListTradesResponse:
        return api.ListTradesResponse()


async def test_book_polls_when_the_gateway_has_no_stream() -> None:
    servicer = UnaryOnlyGateway()  # type: ignore[abstract]  # the rest answer UNIMPLEMENTED
    server = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        process = await asyncio.create_subprocess_exec(
            str(BIN), "--target", f"127.0.0.1:{port}", "--api-key", "k" * 20,
            "book", "ETH-USDT", "--poll", "0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**clean_environment(), "COLUMNS": "160"},
        )  # fmt: skip

        async def polls() -> int:
            return servicer.polls

        await eventually(polls, lambda n: n >= 3, what="the book's polls")
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    finally:
        await server.stop(None)
    text = out.decode()
    assert process.returncode == 130, (text, err)
    assert "polling every 0.1 s" in text
    assert "2000.5" in text
    assert "1.25" in text
    assert "Traceback" not in err.decode()


# --- the bots' decisions (pure) ----------------------------------------------------------


async def test_the_bots_stay_on_the_grid_near_the_mid_with_few_orders() -> None:
    grid = demo.Grid(D("0.01"), D("0.0001"), D("0.001"), D("1"))
    path = demo.PricePath(D("2000"), grid, random.Random(3))
    brain = demo.Brain(grid, random.Random(4))
    resting: list[demo.Resting] = []
    for step in range(2000):
        mid = path.move()
        assert abs(mid - path.start) <= path.start * demo.BAND_BPS / 10_000
        actions = brain.decide(mid, resting)
        canceled = {a.order_id for a in actions if isinstance(a, demo.Cancel)}
        resting = [order for order in resting if order.order_id not in canceled]
        for action in actions:
            if isinstance(action, demo.Place):
                assert action.price % grid.tick == 0
                assert action.quantity % grid.lot == 0
                assert action.quantity >= grid.min_quantity
                assert action.price * action.quantity >= grid.min_notional
                toward_mid = action.price < mid if action.side == "BUY" else action.price > mid
                assert toward_mid == (action.time_in_force == "GTC"), (action, mid)
                if action.time_in_force == "GTC":
                    resting.append(
                        demo.Resting(step * 10 + len(resting), action.side, action.price)
                    )
        assert len(resting) <= demo.MAX_OPEN
