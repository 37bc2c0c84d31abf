"""`ordermesh up`: deposit, trade, stop, start again on the same data, trade again.

| step             | who      | what                            | expected                     |
|------------------|----------|---------------------------------|------------------------------|
| fund             | admin    | 1 BTC to 1, 100000 USDT to 2    | balances show it             |
| rest             | trader 1 | SELL 0.5 BTC-USDT @ 30000       | NEW, on the book             |
| cross            | trader 2 | BUY 0.5 @ 30000 (RESULT)        | FILLED, one fill             |
| settle           | both     | GetBalances, ListMyTrades       | fees taken, one trade        |
| Ctrl-C, up again |          |                                 | exit 0; same state           |
| trade again      | 1 and 2  | SELL/BUY 0.1 @ 31000            | a second trade, later id     |
| second `up`      |          | same data dir                   | exit 1, "in use"             |
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ordermesh.v1 import common_pb2 as common
from ordermesh.v1 import gateway_pb2 as api
from ordermesh.v1 import gateway_pb2_grpc
from tests.e2e.mesh_process import Up, all_serving, eventually, free_ports, mesh_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

Holdings = dict[str, tuple[Decimal, Decimal]]


@pytest_asyncio.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    process = Up(tmp_path / "data", mesh_ports())
    try:
        yield process
    finally:
        await process.kill()


class Client:
    """The gateway, as one API key sees it."""

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        self.stub = gateway_pb2_grpc.GatewayStub(channel)
        self.metadata = (("x-api-key", key),)

    async def deposit(self, account: int, asset: str, amount: str, reference: str) -> None:
        request = api.DepositRequest(
            account_id=account, asset=asset, amount=amount, reference_id=reference
        )
        await self.stub.Deposit(request, metadata=self.metadata, timeout=10)

    async def place(
        self, side: common.Side.ValueType, quantity: str, price: str, client_order_id: str
    ):
        request = api.PlaceOrderRequest(
            symbol="BTC-USDT",
            side=side,
            order_type=common.ORDER_TYPE_LIMIT,
            time_in_force=common.TIME_IN_FORCE_GTC,
            price=price,
            quantity=quantity,
            client_order_id=client_order_id,
            response_type=common.RESPONSE_TYPE_RESULT,
        )
        return await self.stub.PlaceOrder(request, metadata=self.metadata, timeout=10)

    async def holdings(self) -> Holdings:
        answer = await self.stub.GetBalances(
            api.GetBalancesRequest(), metadata=self.metadata, timeout=10
        )
        return {
            b.asset: (Decimal(b.available), Decimal(b.frozen))
            for b in answer.balances
            if Decimal(b.available) or Decimal(b.frozen)
        }

    async def order(self, client_order_id: str) -> api.Order:
        request = api.GetOrderRequest(client_order_id=client_order_id)
        answer = await self.stub.GetOrder(request, metadata=self.metadata, timeout=10)
        return answer.order

    async def trades(self) -> list[api.MyTrade]:
        request = api.ListMyTradesRequest(symbol="BTC-USDT", page_size=50)
        answer = await self.stub.ListMyTrades(request, metadata=self.metadata, timeout=10)
        return list(answer.trades)


def d(text: str) -> Decimal:
    return Decimal(text)


AFTER_FIRST_TRADE: dict[str, Holdings] = {
    # seller: 0.5 BTC left; 15000 USDT less the 10 bps maker fee
    "seller": {"BTC": (d("0.5"), d("0")), "USDT": (d("14985"), d("0"))},
    # buyer: 0.5 BTC less the 20 bps taker fee; 100000 - 15000 USDT
    "buyer": {"BTC": (d("0.499"), d("0")), "USDT": (d("85000"), d("0"))},
}


async def settled(clients: dict[str, Client], expected: dict[str, Holdings]) -> None:
    for name, holdings in expected.items():
        await eventually(clients[name].holdings, holdings.__eq__, what=f"{name}'s balances")


async def first_session(up: Up) -> None:
    await up.start()
    await all_serving(up)
    keys = up.keys()
    assert keys["admin"] in "\n".join(up.lines)  # printed for the person who ran it
    async with grpc.aio.insecure_channel(up.gateway) as channel:
        admin = Client(channel, keys["admin"])
        seller = Client(channel, keys["demo-trader-1"])
        buyer = Client(channel, keys["demo-trader-2"])
        assert await seller.holdings() == {}  # nothing is funded by default
        await admin.deposit(1, "BTC", "1", "fund-seller")
        await admin.deposit(2, "USDT", "100000", "fund-buyer")
        resting = await seller.place(common.SIDE_SELL, "0.5", "30000", "sell-1")
        assert resting.status == common.ORDER_STATUS_NEW
        taking = await buyer.place(common.SIDE_BUY, "0.5", "30000", "buy-1")
        assert taking.status == common.ORDER_STATUS_FILLED
        assert [(d(f.price), d(f.quantity)) for f in taking.fills] == [(d("30000"), d("0.5"))]
        await settled({"seller": seller, "buyer": buyer}, AFTER_FIRST_TRADE)
        await eventually(buyer.trades, lambda t: len(t) == 1, what="the buyer's settled trade")
    assert await up.stop() == 0
    assert up.lines[-1] == "ordermesh stopped"


async def second_session(up: Up) -> None:
    await up.start()
    await all_serving(up)
    keys = up.keys()
    async with grpc.aio.insecure_channel(up.gateway) as channel:
        seller = Client(channel, keys["demo-trader-1"])
        buyer = Client(channel, keys["demo-trader-2"])
        clients = {"seller": seller, "buyer": buyer}
        assert {name: await c.holdings() for name, c in clients.items()} == AFTER_FIRST_TRADE
        sold = await seller.order("sell-1")
        assert (sold.status, d(sold.filled_quantity)) == (common.ORDER_STATUS_FILLED, d("0.5"))
        (first,) = await buyer.trades()
        await seller.place(common.SIDE_SELL, "0.1", "31000", "sell-2")
        again = await buyer.place(common.SIDE_BUY, "0.1", "31000", "buy-2")
        assert again.status == common.ORDER_STATUS_FILLED
        assert again.fills[0].trade_id > first.trade_id
        trades = await eventually(buyer.trades, lambda t: len(t) == 2, what="the second trade")
        assert {t.trade_id for t in trades} == {first.trade_id, again.fills[0].trade_id}
        await second_up_is_refused(up)
    assert await up.stop() == 0


async def second_up_is_refused(up: Up) -> None:
    other = Up(up.data_dir, dict(zip(up.ports, free_ports(len(up.ports)), strict=True)))
    await other.launch()
    status, output = await other.ended()
    assert status == 1
    assert "is in use by another process" in output
    assert "Stop the other `ordermesh up` first" in output


@pytest.mark.asyncio
async def test_up_trades_stops_and_resumes_with_the_same_state(up: Up) -> None:
    await first_session(up)
    await second_session(up)


@pytest.mark.asyncio
async def test_a_port_in_use_stops_everything_with_the_reason(up: Up) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", up.ports["matcher"]))
        taken.listen()
        await up.launch()
        status, output = await up.ended()
    assert status == 1
    assert f"matcher cannot listen on port {up.ports['matcher']}" in output
    assert "--matcher-port" in output
    assert "stopping PostgreSQL" in output  # what had started was stopped
    await up.start()  # and nothing is left holding the data directory
    assert await up.stop() == 0
