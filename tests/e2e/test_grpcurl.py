"""The contract from outside Python: grpcurl (Go) lists, describes and calls `ordermesh up`.

Everything grpcurl knows comes from the gateway's server reflection; requests are JSON
(`-d`), the API key goes in metadata (`-H 'x-api-key: ...'`), as the README shows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.mesh_process import Completed, Up, eventually, run_command, running_mesh
from tests.servers.gotools import go_tool

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

CALL_SECONDS = 30.0


@pytest.fixture(scope="module")
def grpcurl() -> Path:
    return go_tool("grpcurl", "github.com/fullstorydev/grpcurl/cmd/grpcurl", "v1.9.3")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def up() -> AsyncIterator[Up]:
    async with running_mesh("ordermesh-grpcurl-") as process:
        yield process


async def call(grpcurl: Path, up: Up, *after: str, flags: Sequence[str] = ()) -> Completed:
    """`grpcurl -plaintext FLAGS... GATEWAY AFTER...` (AFTER: list, describe X, or a method)."""
    argv = (str(grpcurl), "-plaintext", *flags, up.gateway, *after)
    return await run_command(*argv, seconds=CALL_SECONDS)


def with_key(key: str, body: object) -> list[str]:
    """grpcurl flags: the API key in metadata, the request as JSON."""
    return ["-H", f"x-api-key: {key}", "-d", json.dumps(body)]


async def test_reflection_lists_and_describes_the_gateway(grpcurl: Path, up: Up) -> None:
    services = await call(grpcurl, up, "list")
    assert services.status == 0, services
    assert "ordermesh.v1.Gateway" in services.stdout.split()
    assert "grpc.health.v1.Health" in services.stdout.split()
    methods = await call(grpcurl, up, "list", "ordermesh.v1.Gateway")
    assert "ordermesh.v1.Gateway.PlaceOrder" in methods.stdout.split()
    described = await call(grpcurl, up, "describe", "ordermesh.v1.Gateway")
    assert described.status == 0, described
    assert "rpc PlaceOrder ( .ordermesh.v1.PlaceOrderRequest )" in described.stdout
    assert "rpc StreamMarketData" in described.stdout
    request = await call(grpcurl, up, "describe", "ordermesh.v1.PlaceOrderRequest")
    assert "string client_order_id = 8;" in request.stdout


async def test_a_json_place_order_is_then_shown_by_get_order(grpcurl: Path, up: Up) -> None:
    keys = up.keys()
    trader = keys["demo-trader-1"]
    deposit = {"account_id": 1, "asset": "BTC", "amount": "1", "reference_id": "grpcurl-btc"}
    funded = await call(
        grpcurl, up, "ordermesh.v1.Gateway/Deposit", flags=with_key(keys["admin"], deposit)
    )
    assert funded.status == 0, funded
    assert funded.json()["balance"] == {"asset": "BTC", "available": "1", "frozen": "0"}

    order = {
        "symbol": "BTC-USDT",
        "side": "SIDE_SELL",
        "order_type": "ORDER_TYPE_LIMIT",
        "price": "30000",
        "quantity": "0.25",
        "client_order_id": "grpcurl-ask-1",
        "response_type": "RESPONSE_TYPE_RESULT",
    }
    placed = await call(
        grpcurl, up, "ordermesh.v1.Gateway/PlaceOrder", flags=with_key(trader, order)
    )
    assert placed.status == 0, placed
    answer = placed.json()
    assert (answer["client_order_id"], answer["status"]) == ("grpcurl-ask-1", "ORDER_STATUS_NEW")
    order_id = answer["order_id"]  # uint64: a JSON string (grpcurl keeps the proto's field names)

    query = {"order_id": order_id}

    async def get_order() -> Completed:
        return await call(
            grpcurl, up, "ordermesh.v1.Gateway/GetOrder", flags=with_key(trader, query)
        )

    # GetOrder reads settlement's record, which follows the log a moment behind.
    got = await eventually(get_order, lambda a: a.status == 0, what="the order in GetOrder")
    shown = got.json()["order"]
    assert (shown["order_id"], shown["client_order_id"], shown["status"]) == (
        order_id,
        "grpcurl-ask-1",
        "ORDER_STATUS_NEW",
    )
    assert (shown["side"], shown["price"], shown["quantity"]) == ("SIDE_SELL", "30000", "0.25")


async def test_a_refusal_reaches_grpcurl_with_its_status(grpcurl: Path, up: Up) -> None:
    trader = up.keys()["demo-trader-1"]
    order = {
        "symbol": "BTC-USDT",
        "side": "SIDE_SELL",
        "order_type": "ORDER_TYPE_LIMIT",
        "price": "30000.001",
        "quantity": "0.1",
        "client_order_id": "grpcurl-bad-price",
    }
    refused = await call(
        grpcurl, up, "ordermesh.v1.Gateway/PlaceOrder", flags=with_key(trader, order)
    )
    assert refused.status != 0
    assert "InvalidArgument" in refused.stderr
    assert "price has 3 decimals" in refused.stderr
    keyless = await call(grpcurl, up, "ordermesh.v1.Gateway/GetBalances", flags=["-d", "{}"])
    assert keyless.status != 0
    assert "Unauthenticated" in keyless.stderr
