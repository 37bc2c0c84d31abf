"""ordermesh.engine into balances: trades and releases, events from before the start, and
records that must stop the service rather than be skipped."""

from __future__ import annotations

import functools
import operator
from collections import Counter

import pytest

from ordermesh.bus.base import Bus
from ordermesh.events import NewOrder
from ordermesh.model import FEE_ACCOUNT, OrderStatus
from ordermesh.runtime import EXIT_FATAL
from tests.integration.ubscore.harness import (
    BTC_UNIT,
    BUY,
    NOTIONAL,
    QUANTITY,
    SELL,
    USDT_UNIT,
    Running,
    balances,
    commands,
    deposit,
    done,
    eventually,
    ledger,
    limit_order,
    matcher,
    running,
    supply,
)

pytestmark = pytest.mark.asyncio

BUYER, SELLER = 1, 2


async def holdings(service: Running, accounts: tuple[int, ...]) -> Counter[str]:
    """Per asset, available + frozen summed over `accounts`."""
    total: Counter[str] = Counter()
    for account in accounts:
        for asset, (available, frozen) in (await balances(service.stub, account)).items():
            total[asset] += available + frozen
    return total


async def test_a_trade_and_its_order_done_move_the_funds(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service, matcher(bus, service.topics) as engine:
        await deposit(service.stub, BUYER, "USDT", 10 * USDT_UNIT, "fund-buyer")
        await deposit(service.stub, SELLER, "BTC", BTC_UNIT, "fund-seller")
        await service.stub.Reserve(limit_order(SELLER, SELL, "sell-1"))
        await service.stub.Reserve(limit_order(BUYER, BUY, "buy-1"))
        sell, buy = await logged_orders(bus, service)
        trade = engine.trade(maker=sell, taker=buy)

        await engine.emit(
            trade,
            done(sell, OrderStatus.FILLED, QUANTITY, NOTIONAL),
            done(buy, OrderStatus.FILLED, QUANTITY, NOTIONAL),
        )

        buyer_fee, seller_fee = trade.taker_fee, trade.maker_fee
        assert buyer_fee > 0
        assert seller_fee > 0
        expected = {
            BUYER: {"USDT": (9 * USDT_UNIT, 0), "BTC": (QUANTITY - buyer_fee, 0)},
            SELLER: {"BTC": (BTC_UNIT - QUANTITY, 0), "USDT": (NOTIONAL - seller_fee, 0)},
            FEE_ACCOUNT: {"BTC": (buyer_fee, 0), "USDT": (seller_fee, 0)},
        }
        for account, wanted in expected.items():
            await eventually(
                functools.partial(balances, service.stub, account),
                functools.partial(operator.eq, wanted),
                what=f"balances of account {account}",
            )
        # Conservation: what the accounts hold is what was deposited, per asset.
        deposited = supply(await ledger(bus, service.topics))
        assert await holdings(service, (BUYER, SELLER, FEE_ACCOUNT)) == deposited


async def logged_orders(bus: Bus, service: Running) -> tuple[NewOrder, NewOrder]:
    """The (sell, buy) NewOrders in the log."""
    orders: dict[str, object] = {o.client_order_id: o for o in await commands(bus, service.topics)}
    sell, buy = orders["sell-1"], orders["buy-1"]
    assert isinstance(sell, NewOrder)
    assert isinstance(buy, NewOrder)
    return sell, buy


async def test_events_logged_before_the_start_are_applied_after_it(bus: Bus, prefix: str) -> None:
    # A first run logs the orders, then stops; the matcher answers while ubscore is down.
    async with running(bus, prefix, snapshot_every=1_000_000) as service:
        await deposit(service.stub, BUYER, "USDT", 10 * USDT_UNIT, "fund-buyer")
        await service.stub.Reserve(limit_order(BUYER, BUY, "buy-1"))
        (order,) = await commands(bus, service.topics)
        topics = service.topics
    assert isinstance(order, NewOrder)
    async with matcher(bus, topics) as engine:
        await engine.emit(done(order, OrderStatus.EXPIRED, 0, 0))

    async with running(bus, prefix) as restarted:
        await eventually(
            lambda: balances(restarted.stub, BUYER),
            lambda now: now == {"USDT": (10 * USDT_UNIT, 0)},
            what="the release logged while ubscore was down",
        )


async def test_an_undecodable_engine_record_stops_the_service(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        producer = bus.producer()
        await producer.start()
        try:
            await producer.send(service.topics.engine, b"\xff not an EngineEvent", key=b"X")
        finally:
            await producer.stop()

        assert await service.exit_status() == EXIT_FATAL
        assert not service.service.lifecycle.serving


async def test_a_gap_in_engine_sequences_stops_the_service(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service, matcher(bus, service.topics) as engine:
        await deposit(service.stub, BUYER, "USDT", 10 * USDT_UNIT, "fund-buyer")
        await service.stub.Reserve(limit_order(BUYER, BUY, "buy-1"))
        (order,) = await commands(bus, service.topics)
        assert isinstance(order, NewOrder)
        engine.sequence += 1  # one event lost

        await engine.emit(done(order, OrderStatus.EXPIRED, 0, 0))

        assert await service.exit_status() == EXIT_FATAL
