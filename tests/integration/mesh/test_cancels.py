"""Cancels through both services: ubscore acks a cancel once it is logged, and only the
matcher's OrderDone(CANCELED) gives the funds back (DESIGN §11).

To see the state between the two for certain, the matcher is stopped while the cancels are
logged and started again afterwards: the new instance resumes from the group's committed
offset (never "latest"), so it answers every command logged while it was down.
"""

from __future__ import annotations

import grpc
import pytest

from ordermesh.bus.base import Bus
from ordermesh.events import CancelOrder, CancelRejected, NewOrder, OrderAccepted, OrderDone
from ordermesh.model import OrderStatus, RejectReason, Symbol
from ordermesh.v1 import matcher_pb2 as pb
from ordermesh.v1 import ubscore_pb2
from tests.integration.matcher.harness import PARTITIONS, matcher_stub
from tests.integration.mesh.harness import engine_events, matched, matcher_running, orders_logged
from tests.integration.ubscore.harness import (
    BUY,
    NOTIONAL,
    USDT_UNIT,
    Running,
    balances,
    deposit,
    eventually,
    limit_order,
    running,
)

pytestmark = pytest.mark.asyncio

BTC_USDT = Symbol("BTC-USDT")
BUYER = 1
FUNDED = {"USDT": (10 * USDT_UNIT, 0)}
ONE_FROZEN = {"USDT": (10 * USDT_UNIT - NOTIONAL, NOTIONAL)}


async def resting(port: int, order_id: int) -> bool:
    """Whether the matcher on `port` has the order on its BTC-USDT book (else NOT_FOUND)."""
    async with matcher_stub(port) as stub:
        try:
            await stub.GetOrder(pb.MatcherGetOrderRequest(symbol=BTC_USDT, order_id=order_id))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
    return True


async def place_resting_bid(bus: Bus, prefix: str, ubscore: Running, client_order_id: str) -> int:
    """Place a BUY nobody sells to; return its order_id once a matcher has booked it."""
    await deposit(ubscore.stub, BUYER, "USDT", 10 * USDT_UNIT, "fund-buyer")
    placed = await ubscore.stub.Reserve(limit_order(BUYER, BUY, client_order_id))
    async with matcher_running(bus, prefix) as matcher:
        await eventually(
            lambda: resting(matcher.port, placed.order_id),
            bool,
            what=f"order {placed.order_id} on the book",
        )
    order_id: int = placed.order_id
    return order_id


async def test_a_cancel_acked_by_ubscore_releases_nothing_until_the_matcher_cancels(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix, partitions=PARTITIONS) as ubscore:
        stub = ubscore.stub
        order_id = await place_resting_bid(bus, prefix, ubscore, "bid-1")

        # The matcher is down: ubscore acks the cancel once it is logged...
        cancel = ubscore_pb2.UBSCoreCancelRequest(account_id=BUYER, order_id=order_id)
        acked = await stub.Cancel(cancel)
        assert (acked.order_id, acked.client_order_id) == (order_id, "bid-1")
        # ...and that is not "canceled": the funds stay frozen, no OrderDone exists yet.
        assert await balances(stub, BUYER) == ONE_FROZEN
        logged = [command for command, _ in await orders_logged(bus, ubscore.topics)]
        assert [type(command) for command in logged] == [NewOrder, CancelOrder]
        bodies = [e.body for e in (await engine_events(bus, ubscore.topics))[BTC_USDT]]
        assert [type(body) for body in bodies] == [OrderAccepted]
        assert await balances(stub, BUYER) == ONE_FROZEN

        async with matcher_running(bus, prefix) as matcher:
            await eventually(
                lambda: balances(stub, BUYER),
                lambda held: held == FUNDED,
                what="the funds released by the matcher's OrderDone(CANCELED)",
            )
            bodies = [e.body for e in (await engine_events(bus, ubscore.topics))[BTC_USDT]]
            assert [type(body) for body in bodies] == [OrderAccepted, OrderDone]
            done = bodies[1]
            assert isinstance(done, OrderDone)
            assert (done.order_id, done.status) == (order_id, OrderStatus.CANCELED)
            assert not await resting(matcher.port, order_id)


async def test_two_cancels_of_one_order_and_a_new_order_are_each_answered_by_the_matcher(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix, partitions=PARTITIONS) as ubscore:
        stub = ubscore.stub
        order_id = await place_resting_bid(bus, prefix, ubscore, "bid-1")

        # With the matcher down: a cancel naming the order's own client_order_id, a second
        # cancel of the same order, and a new order that reuses no id.
        by_client = ubscore_pb2.UBSCoreCancelRequest(account_id=BUYER, client_order_id="bid-1")
        by_id = ubscore_pb2.UBSCoreCancelRequest(account_id=BUYER, order_id=order_id)
        first, second = await stub.Cancel(by_client), await stub.Cancel(by_id)
        fresh = await stub.Reserve(limit_order(BUYER, BUY, "bid-2"))
        assert first.order_id == second.order_id == order_id
        assert not fresh.duplicate
        assert fresh.order_id != order_id
        # The cancels did not free the client_order_id for a new order either.
        again = await stub.Reserve(limit_order(BUYER, BUY, "bid-1"))
        assert (again.order_id, again.duplicate) == (order_id, True)
        logged = [command for command, _ in await orders_logged(bus, ubscore.topics)]
        assert [(type(c), c.order_id) for c in logged] == [
            (NewOrder, order_id),
            (CancelOrder, order_id),
            (CancelOrder, order_id),
            (NewOrder, fresh.order_id),
        ]

        async with matcher_running(bus, prefix):
            await matched(bus, prefix, ubscore.topics)
            bodies = [e.body for e in (await engine_events(bus, ubscore.topics))[BTC_USDT]]
            await eventually(
                lambda: balances(stub, BUYER),
                lambda held: held == ONE_FROZEN,
                what="bid-1 released, bid-2 frozen",
            )
        # Each command has its answer: the first cancel cancels, the second is rejected
        # (the order is gone), and the new order is booked.
        assert [type(body) for body in bodies] == [
            OrderAccepted, OrderDone, CancelRejected, OrderAccepted
        ]  # fmt: skip
        done, rejected, booked = bodies[1:]
        assert isinstance(done, OrderDone)
        assert isinstance(rejected, CancelRejected)
        assert isinstance(booked, OrderAccepted)
        assert (done.order_id, done.status) == (order_id, OrderStatus.CANCELED)
        assert rejected.order_id == order_id
        assert rejected.reason is not RejectReason.UNSPECIFIED
        assert (booked.order_id, booked.client_order_id) == (fresh.order_id, "bid-2")
