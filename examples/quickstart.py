"""Trade against a running `ordermesh up`: fund two accounts, cross two orders, read balances.

Run `make run` in one terminal, then in another: `.venv/bin/python examples/quickstart.py`.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import cast

import grpc
from grpc_status import rpc_status

from ordermesh.grpcx.errors import error_info
from ordermesh.v1 import common_pb2 as c
from ordermesh.v1 import gateway_pb2 as g
from ordermesh.v1 import gateway_pb2_grpc as s


def main() -> None:
    """Deposit, place a resting SELL and a crossing BUY, then show what happened."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="the gateway's address")
    parser.add_argument("--data-dir", type=Path, default=Path(".ordermesh"), help="up's data dir")
    args = parser.parse_args()
    keys_file = (args.data_dir / "api_keys.toml").read_text(encoding="utf-8")
    keys = {entry["name"]: entry["key"] for entry in tomllib.loads(keys_file)["keys"]}
    admin, alice, bob = (
        (("x-api-key", keys[name]),) for name in ("admin", "demo-trader-1", "demo-trader-2")
    )
    gateway = s.GatewayStub(grpc.insecure_channel(args.gateway))

    # Money enters only by deposit, with the admin key; the reference_id makes a retry safe.
    gateway.Deposit(
        g.DepositRequest(account_id=1, asset="BTC", amount="1", reference_id="a-1"), metadata=admin
    )
    gateway.Deposit(
        g.DepositRequest(account_id=2, asset="USDT", amount="50000", reference_id="b-1"),
        metadata=admin,
    )

    sell = g.PlaceOrderRequest(
        symbol="BTC-USDT",
        side=c.SIDE_SELL,
        order_type=c.ORDER_TYPE_LIMIT,
        price="30000",
        quantity="0.5",
        client_order_id="alice-1",
    )
    gateway.PlaceOrder(sell, metadata=alice)
    buy = g.PlaceOrderRequest(
        symbol="BTC-USDT",
        side=c.SIDE_BUY,
        order_type=c.ORDER_TYPE_LIMIT,
        price="30100",
        quantity="0.2",
        client_order_id="bob-1",
        response_type=c.RESPONSE_TYPE_RESULT,
    )
    result = gateway.PlaceOrder(buy, metadata=bob)
    print("bob's buy:", c.OrderStatus.Name(result.status))
    for fill in result.fills:
        print(f"  filled {fill.quantity} at {fill.price}, fee {fill.fee} {fill.fee_asset}")
    for balance in gateway.GetBalances(g.GetBalancesRequest(), metadata=bob).balances:
        print(f"  bob holds {balance.available} {balance.asset} ({balance.frozen} frozen)")

    # Every refusal is a gRPC status with a google.rpc.ErrorInfo reason and a clear message.
    bad = g.PlaceOrderRequest(
        symbol="BTC-USDT",
        side=c.SIDE_BUY,
        order_type=c.ORDER_TYPE_LIMIT,
        price="30000.001",
        quantity="0.1",
        client_order_id="bob-2",
    )
    try:
        gateway.PlaceOrder(bad, metadata=bob)
    except grpc.RpcError as e:
        info = error_info(rpc_status.from_call(cast(grpc.Call, e)))  # a failed call is both
        print("refused:", e.code().name, info.reason if info else "", "-", e.details())


if __name__ == "__main__":
    main()
