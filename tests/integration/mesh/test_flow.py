"""Reserve over gRPC -> OrderCommand on the log -> the matcher's events -> ubscore's balances.

Both services run in this process on one bus (MemoryBus, and a KafkaBus on the real broker).
Nothing is hand-made between them: ubscore logs the orders, the matcher trades them, ubscore
applies what the matcher published. Expected balances follow config/markets.toml's fees.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from ordermesh.amounts import fee
from ordermesh.bus.base import Bus
from ordermesh.events import NewOrder, OrderAccepted, OrderDone, TradeExecuted
from ordermesh.grpcx.errors import reason_of
from ordermesh.model import FEE_ACCOUNT, OrderStatus, RejectReason, Symbol
from ordermesh.v1 import ubscore_pb2
from tests.integration.mesh.harness import (
    engine_events,
    held_by,
    matched,
    mesh,
    replayed,
    served,
    totals,
)
from tests.integration.ubscore.harness import (
    BTC_UNIT,
    BUY,
    MARKETS,
    SELL,
    USDT_UNIT,
    balances,
    deposit,
    eventually,
    ledger,
    limit_order,
    supply,
)

pytestmark = pytest.mark.asyncio

BTC_USDT = Symbol("BTC-USDT")
BUYER, SELLER, POOR = 1, 2, 3
ACCOUNTS = (FEE_ACCOUNT, BUYER, SELLER)
ASK = 100 * USDT_UNIT  # the resting SELL's limit: the fill price
BID = 101 * USDT_UNIT  # the BUY's limit, above the ask: it pays the ask, not its limit
OFFERED = BTC_UNIT // 2  # 0.5 BTC offered
BOUGHT = BTC_UNIT // 5  # 0.2 BTC bought, all of the BUY


async def test_a_crossing_buy_and_sell_end_with_exact_balances_and_conservation(
    bus: Bus, prefix: str
) -> None:
    market = MARKETS.market(BTC_USDT)
    async with mesh(bus, prefix) as both:
        stub = both.stub
        # Nobody has money the tests did not deposit (no seeded accounts).
        assert await served(stub, ACCOUNTS) == {account: {} for account in ACCOUNTS}
        await deposit(stub, BUYER, "USDT", 50 * USDT_UNIT, "fund-buyer")
        await deposit(stub, SELLER, "BTC", BTC_UNIT, "fund-seller")
        sell = await stub.Reserve(limit_order(SELLER, SELL, "sell-1", price=ASK, quantity=OFFERED))
        buy = await stub.Reserve(limit_order(BUYER, BUY, "buy-1", price=BID, quantity=BOUGHT))
        assert (sell.reserved_asset, sell.reserved_amount) == ("BTC", OFFERED)
        assert (buy.reserved_asset, buy.reserved_amount) == ("USDT", market.notional(BID, BOUGHT))

        await eventually(
            lambda: balances(stub, BUYER),
            lambda held: "BTC" in held and held["USDT"][1] == 0,
            what="the buyer's fill and release applied",
        )
        paid = market.notional(ASK, BOUGHT)  # 20 USDT: at the maker's price
        buyer_fee = fee(BOUGHT, market.taker_fee_bps)  # taker, in the base it receives
        seller_fee = fee(paid, market.maker_fee_bps)  # maker, in the quote it receives
        assert (paid, buyer_fee, seller_fee) == (20 * USDT_UNIT, 40_000, 20_000)
        assert await served(stub, ACCOUNTS) == {
            # 20.2 USDT was frozen, 20 paid: the price improvement came back, nothing frozen.
            BUYER: {"USDT": (30 * USDT_UNIT, 0), "BTC": (BOUGHT - buyer_fee, 0)},
            # 0.3 BTC still offered on the book, so still frozen.
            SELLER: {"BTC": (BTC_UNIT - OFFERED, OFFERED - BOUGHT), "USDT": (paid - seller_fee, 0)},
            FEE_ACCOUNT: {"BTC": (buyer_fee, 0), "USDT": (seller_fee, 0)},
        }

        withdraw = ubscore_pb2.UBSCoreWithdrawRequest(
            account_id=SELLER, asset="BTC", amount=BTC_UNIT // 10, reference_id="out-1"
        )
        await stub.Withdraw(withdraw)
        held = await served(stub, ACCOUNTS)
        # Conservation: what all accounts (fees included) hold is deposits - withdrawals.
        wanted = {"USDT": 50 * USDT_UNIT, "BTC": BTC_UNIT - BTC_UNIT // 10}
        assert totals(held.values()) == supply(await ledger(bus, both.topics)) == wanted

        # The log says the same: one trade at the ask, the BUY filled, the SELL resting.
        events = (await engine_events(bus, both.topics))[BTC_USDT]
        bodies = [event.body for event in events]
        assert [type(body) for body in bodies] == [
            OrderAccepted, OrderAccepted, TradeExecuted, OrderDone
        ]  # fmt: skip
        trade, done = bodies[2], bodies[3]
        assert isinstance(trade, TradeExecuted)
        assert isinstance(done, OrderDone)
        assert (trade.maker_order_id, trade.taker_order_id) == (sell.order_id, buy.order_id)
        assert (trade.price, trade.quantity, trade.quote_quantity) == (ASK, BOUGHT, paid)
        assert (trade.taker_fee, trade.maker_fee) == (buyer_fee, seller_fee)
        assert (done.order_id, done.status) == (buy.order_id, OrderStatus.FILLED)
        # A ubscore rebuilt from the log alone holds exactly what the live one serves.
        rebuilt = await replayed(bus, both.topics)
        assert {account: held_by(rebuilt, account) for account in ACCOUNTS} == held


async def refused(call: Any) -> tuple[grpc.StatusCode, RejectReason | None]:
    """Await a call that must fail: its status code and ErrorInfo reason."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code(), await reason_of(call)


async def test_an_unfunded_order_never_reaches_the_matcher_and_a_resend_trades_once(
    bus: Bus, prefix: str
) -> None:
    async with mesh(bus, prefix) as both:
        stub = both.stub
        await deposit(stub, BUYER, "USDT", 50 * USDT_UNIT, "fund-buyer")
        await deposit(stub, SELLER, "BTC", BTC_UNIT, "fund-seller")
        await deposit(stub, POOR, "USDT", USDT_UNIT // 2, "fund-poor")
        unfunded = stub.Reserve(limit_order(POOR, BUY, "poor-1", price=ASK, quantity=BOUGHT))
        assert await refused(unfunded) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.INSUFFICIENT_FUNDS,
        )
        sell = await stub.Reserve(limit_order(SELLER, SELL, "sell-1", price=ASK, quantity=BOUGHT))
        buy = await stub.Reserve(limit_order(BUYER, BUY, "buy-1", price=ASK, quantity=BOUGHT))
        await eventually(
            lambda: balances(stub, BUYER),
            lambda held: "BTC" in held,
            what="the buyer's fill applied",
        )
        settled = await served(stub, (FEE_ACCOUNT, BUYER, SELLER, POOR))

        # The BUY resent after it traded: the original order, not a second one.
        again = await stub.Reserve(limit_order(BUYER, BUY, "buy-1", price=ASK, quantity=BOUGHT))
        assert (again.order_id, again.duplicate) == (buy.order_id, True)

        produced = await matched(bus, prefix, both.topics)  # everything logged was matched
        logged = [command for command, _ in produced]
        assert [(c.client_order_id, c.order_id) for c in logged if isinstance(c, NewOrder)] == [
            ("sell-1", sell.order_id),
            ("buy-1", buy.order_id),
        ]
        assert len(logged) == 2
        bodies = [event.body for event in (await engine_events(bus, both.topics))[BTC_USDT]]
        assert sum(isinstance(body, TradeExecuted) for body in bodies) == 1
        assert POOR not in {getattr(body, "account_id", None) for body in bodies}
        assert await served(stub, (FEE_ACCOUNT, BUYER, SELLER, POOR)) == settled
        assert settled[POOR] == {"USDT": (USDT_UNIT // 2, 0)}
