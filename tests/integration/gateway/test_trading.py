"""Deposit, trade with RESULT, and read it all back: balances, orders, trades, market data.

Each test runs on the MemoryBus and on Kafka (`mesh_on_bus`), and ends with
`check_settled`: every trade in PostgreSQL exactly once, GetBalances equal to the PostgreSQL
ledger for every account, and Σ balances = deposits - withdrawals in ubscore and PostgreSQL.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.v1 import common_pb2 as S
from ordermesh.v1 import gateway_pb2
from tests.integration.gateway.harness import (
    Mesh,
    as_trader,
    balances,
    deposit,
    eventually,
    limit,
    place,
    refused,
    settled_order,
)
from tests.integration.gateway.settled import check_settled

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

BUY, SELL = S.SIDE_BUY, S.SIDE_SELL


async def test_a_crossing_order_fills_at_the_makers_price(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    buyer, seller = mesh.accounts(2)
    funded = await deposit(mesh, buyer, "USDT", "1000")
    assert (funded.balance.asset, funded.balance.available) == ("USDT", "1000")
    assert not funded.duplicate
    await deposit(mesh, seller, "ETH", "2")

    rested = await place(mesh, seller, limit(SELL, "100", "0.5", "sell-1", symbol="ETH-USDT"))
    assert (rested.status, rested.filled_quantity, rested.symbol) == (
        S.ORDER_STATUS_NEW,
        "0",
        "ETH-USDT",
    )
    assert not rested.fills
    assert not rested.duplicate

    taken = await place(mesh, buyer, limit(BUY, "101", "0.2", "buy-1", symbol="ETH-USDT"))
    assert taken.status == S.ORDER_STATUS_FILLED
    assert (taken.filled_quantity, taken.filled_quote_quantity) == ("0.2", "20")
    (fill,) = taken.fills
    assert (fill.price, fill.quantity, fill.quote_quantity) == ("100", "0.2", "20")
    assert (fill.fee, fill.fee_asset, fill.maker) == ("0.0004", "ETH", False)  # 20 bps of 0.2

    # The price improvement (101 reserved, 100 paid) is refunded: nothing stays frozen.
    await eventually(
        lambda: balances(mesh, buyer),
        lambda b: b == {"USDT": ("980", "0"), "ETH": ("0.1996", "0")},
        what="the buyer's balances",
    )
    await eventually(
        lambda: balances(mesh, seller),
        lambda b: b == {"ETH": ("1.5", "0.3"), "USDT": ("19.98", "0")},  # maker: 10 bps of 20
        what="the seller's balances",
    )

    # A resent client_order_id is the same order, with its outcome.
    again = await place(mesh, buyer, limit(BUY, "101", "0.2", "buy-1", symbol="ETH-USDT"))
    assert (again.order_id, again.duplicate, again.status) == (
        taken.order_id,
        True,
        S.ORDER_STATUS_FILLED,
    )
    assert list(again.fills) == list(taken.fills)

    await _settled_reads(mesh, buyer, seller, taken, rested)
    settled = await check_settled(mesh)
    assert (settled.trades, settled.supply) == (1, {"USDT": 1000 * 10**6, "ETH": 2 * 10**8})


async def _settled_reads(
    mesh: Mesh,
    buyer: int,
    seller: int,
    taken: gateway_pb2.PlaceOrderResponse,
    rested: gateway_pb2.PlaceOrderResponse,
) -> None:
    order = await settled_order(mesh, buyer, taken.order_id, S.ORDER_STATUS_FILLED)
    assert (order.client_order_id, order.price, order.quantity, order.filled_quantity) == (
        "buy-1",
        "101",
        "0.2",
        "0.2",
    )
    assert (order.side, order.order_type, order.time_in_force) == (
        BUY,
        S.ORDER_TYPE_LIMIT,
        S.TIME_IN_FORCE_GTC,
    )
    maker = await settled_order(mesh, seller, rested.order_id, S.ORDER_STATUS_PARTIALLY_FILLED)
    assert maker.filled_quantity == "0.2"
    by_client = await mesh.stub.GetOrder(
        gateway_pb2.GetOrderRequest(client_order_id="sell-1"), metadata=as_trader(seller)
    )
    assert by_client.order.order_id == rested.order_id

    (mine,) = (
        await mesh.stub.ListMyTrades(gateway_pb2.ListMyTradesRequest(), metadata=as_trader(buyer))
    ).trades
    assert (mine.order_id, mine.side, mine.price, mine.quantity, mine.maker) == (
        taken.order_id,
        BUY,
        "100",
        "0.2",
        False,
    )
    (theirs,) = (
        await mesh.stub.ListMyTrades(
            gateway_pb2.ListMyTradesRequest(symbol="ETH-USDT"), metadata=as_trader(seller)
        )
    ).trades
    assert (theirs.side, theirs.fee, theirs.fee_asset, theirs.maker) == (SELL, "0.02", "USDT", True)

    (public,) = (
        await mesh.stub.ListTrades(
            gateway_pb2.ListTradesRequest(symbol="ETH-USDT"), metadata=as_trader(buyer)
        )
    ).trades
    assert (public.price, public.quantity, public.taker_side) == ("100", "0.2", BUY)
    ticker = (
        await mesh.stub.GetTicker(
            gateway_pb2.GetTickerRequest(symbol="ETH-USDT"), metadata=as_trader(buyer)
        )
    ).ticker
    assert (ticker.last_price, ticker.volume, ticker.quote_volume, ticker.trade_count) == (
        "100",
        "0.2",
        "20",
        1,
    )
    candles = await mesh.stub.GetCandles(
        gateway_pb2.GetCandlesRequest(
            symbol="ETH-USDT", interval=S.CANDLE_INTERVAL_1M, start_time=Timestamp(seconds=0)
        ),
        metadata=as_trader(buyer),
    )
    assert [(c.open, c.close, c.volume) for c in candles.candles] == [("100", "100", "0.2")]

    book = await mesh.stub.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol="ETH-USDT"), metadata=as_trader(buyer)
    )
    assert [(level.price, level.quantity, level.order_count) for level in book.asks] == [
        ("100", "0.3", 1)
    ]
    assert not book.bids
    (still_open,) = (
        await mesh.stub.ListOpenOrders(
            gateway_pb2.ListOpenOrdersRequest(), metadata=as_trader(seller)
        )
    ).orders
    assert still_open.order_id == rested.order_id
    listed = await mesh.stub.ListOrders(gateway_pb2.ListOrdersRequest(), metadata=as_trader(buyer))
    assert [o.order_id for o in listed.orders] == [taken.order_id]


async def test_time_in_force_post_only_and_a_quote_budget(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    maker, taker = mesh.accounts(2)
    await deposit(mesh, maker, "BTC", "1")
    await deposit(mesh, taker, "USDT", "1000")
    await place(mesh, maker, limit(SELL, "100", "0.1", "ask-100"))
    await place(mesh, maker, limit(SELL, "102", "0.1", "ask-102"))

    ioc = await place(
        mesh, taker, limit(BUY, "101", "0.3", "ioc", time_in_force=S.TIME_IN_FORCE_IOC)
    )
    assert (ioc.status, ioc.reject_reason, ioc.filled_quantity) == (
        S.ORDER_STATUS_EXPIRED,
        S.REJECT_REASON_NO_LIQUIDITY,
        "0.1",
    )
    assert [f.price for f in ioc.fills] == ["100"]

    fok = await place(
        mesh, taker, limit(BUY, "102", "0.3", "fok", time_in_force=S.TIME_IN_FORCE_FOK)
    )
    assert (fok.status, fok.reject_reason, fok.filled_quantity) == (
        S.ORDER_STATUS_REJECTED,
        S.REJECT_REASON_FOK_NOT_FILLABLE,
        "0",
    )

    taking = await place(mesh, taker, limit(BUY, "102", "0.01", "post-take", post_only=True))
    assert (taking.status, taking.reject_reason) == (
        S.ORDER_STATUS_REJECTED,
        S.REJECT_REASON_POST_ONLY_WOULD_TAKE,
    )
    posted = await place(mesh, taker, limit(BUY, "99", "0.1", "post-rest", post_only=True))
    assert posted.status == S.ORDER_STATUS_NEW

    budget = await place(
        mesh,
        taker,
        gateway_pb2.PlaceOrderRequest(
            symbol="BTC-USDT",
            side=BUY,
            order_type=S.ORDER_TYPE_MARKET,
            quote_quantity="5.1",
            client_order_id="by-budget",
            response_type=S.RESPONSE_TYPE_RESULT,
        ),
    )
    assert (budget.status, budget.filled_quantity, budget.filled_quote_quantity) == (
        S.ORDER_STATUS_FILLED,
        "0.05",
        "5.1",
    )
    # Spent: 10 at 100 and the budget of 5.1; frozen: the post-only bid, 99 x 0.1.
    await eventually(
        lambda: balances(mesh, taker),
        lambda b: b["USDT"] == ("975", "9.9"),
        what="the taker's USDT",
    )
    assert (await check_settled(mesh)).trades == 2  # the IOC at 100, the budget at 102


async def test_partial_fills(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    maker, taker = mesh.accounts(2)
    await deposit(mesh, maker, "BTC", "1")
    await deposit(mesh, taker, "USDT", "1000")
    resting = await place(mesh, maker, limit(SELL, "100", "1", "big-ask"))
    first = await place(mesh, taker, limit(BUY, "100", "0.4", "part-1"))
    assert (first.status, first.filled_quantity) == (S.ORDER_STATUS_FILLED, "0.4")
    second = await place(mesh, taker, limit(BUY, "100", "1", "part-2"))
    assert (second.status, second.filled_quantity, second.filled_quote_quantity) == (
        S.ORDER_STATUS_PARTIALLY_FILLED,
        "0.6",
        "60",
    )
    assert [(f.quantity, f.maker) for f in second.fills] == [("0.6", False)]
    await settled_order(mesh, maker, resting.order_id, S.ORDER_STATUS_FILLED)
    rest = await settled_order(mesh, taker, second.order_id, S.ORDER_STATUS_PARTIALLY_FILLED)
    assert (rest.filled_quantity, rest.quantity) == ("0.6", "1")
    assert (await check_settled(mesh)).trades == 2


async def test_cancel_ack_then_result(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    (account,) = mesh.accounts(1)
    await deposit(mesh, account, "USDT", "100")
    first = await place(mesh, account, limit(BUY, "10", "1", "bid-1", result=False))
    assert first.status == S.ORDER_STATUS_PENDING_NEW
    second = await place(mesh, account, limit(BUY, "10", "1", "bid-2"))
    await eventually(
        lambda: balances(mesh, account),
        lambda b: b["USDT"] == ("80", "20"),
        what="both bids frozen",
    )

    acked = await mesh.stub.CancelOrder(
        gateway_pb2.CancelOrderRequest(symbol="BTC-USDT", order_id=first.order_id),
        metadata=as_trader(account),
    )
    # ACK: in the log, not yet acted on by the matcher; never claims CANCELED.
    assert (acked.order_id, acked.client_order_id, acked.status) == (
        first.order_id,
        "bid-1",
        S.ORDER_STATUS_UNSPECIFIED,
    )
    result = await mesh.stub.CancelOrder(
        gateway_pb2.CancelOrderRequest(
            symbol="BTC-USDT", client_order_id="bid-2", response_type=S.RESPONSE_TYPE_RESULT
        ),
        metadata=as_trader(account),
    )
    assert (result.order_id, result.status) == (second.order_id, S.ORDER_STATUS_CANCELED)
    await eventually(
        lambda: balances(mesh, account),
        lambda b: b["USDT"] == ("100", "0"),
        what="both bids released",
    )
    await settled_order(mesh, account, first.order_id, S.ORDER_STATUS_CANCELED)
    again = await refused(
        mesh.stub.CancelOrder(
            gateway_pb2.CancelOrderRequest(
                symbol="BTC-USDT", order_id=second.order_id, response_type=S.RESPONSE_TYPE_RESULT
            ),
            metadata=as_trader(account),
        )
    )
    assert (again.code, again.reason) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER")
    assert (await check_settled(mesh)).trades == 0


async def test_refusals_of_ubscore_pass_through_unchanged(mesh_on_bus: Mesh) -> None:
    mesh = mesh_on_bus
    (account,) = mesh.accounts(1)
    await deposit(mesh, account, "USDT", "5")
    short = await refused(place(mesh, account, limit(BUY, "100", "1", "too-big")))
    assert (short.code, short.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    assert "USDT" in short.message
    assert await balances(mesh, account) == {"USDT": ("5", "0")}
    assert (await check_settled(mesh)).supply == {"USDT": 5 * 10**6}
