"""Reserve, Cancel, Deposit, Withdraw and GetBalances over gRPC, checked against the log."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from ordermesh.bus.base import Bus
from ordermesh.events import CancelOrder, NewOrder
from ordermesh.grpcx.errors import error_info, reason_of
from ordermesh.model import LedgerEntryKind, OrderStatus, RejectReason, Side
from ordermesh.v1 import common_pb2, ubscore_pb2
from tests.integration.ubscore.harness import (
    BUY,
    NOTIONAL,
    PRICE,
    QUANTITY,
    USDT_UNIT,
    balances,
    commands,
    deposit,
    done,
    eventually,
    ledger,
    limit_order,
    matcher,
    new_orders,
    running,
)
from ubscore.lifecycle import LogTopics

pytestmark = pytest.mark.asyncio

FAILED = grpc.StatusCode.FAILED_PRECONDITION
EXISTS = grpc.StatusCode.ALREADY_EXISTS


async def refused(call: Any) -> tuple[grpc.StatusCode, RejectReason | None, str]:
    """Await a gRPC call that must fail; its status code, ErrorInfo reason and details."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code(), await reason_of(call), failure.value.details() or ""


async def test_reserve_logs_one_command_and_freezes_the_funds(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        response = await service.stub.Reserve(limit_order(1, BUY, "o-1"), timeout=10)

        assert (response.client_order_id, response.duplicate) == ("o-1", False)
        assert (response.reserved_asset, response.reserved_amount) == ("USDT", NOTIONAL)
        logged = await commands(bus, service.topics)
        assert len(logged) == 1
        (order,) = logged
        assert isinstance(order, NewOrder)
        assert (order.order_id, order.account_id, order.client_order_id) == (
            response.order_id,
            1,
            "o-1",
        )
        assert (order.side, order.price, order.quantity) == (Side.BUY, PRICE, QUANTITY)
        assert order.timestamp_ns == response.timestamp_ns > 0
        assert await balances(service.stub, 1) == {"USDT": (9 * USDT_UNIT, NOTIONAL)}


async def test_an_order_without_funds_is_refused_and_never_logged(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", NOTIONAL // 2, "d-1")
        code, reason, details = await refused(service.stub.Reserve(limit_order(1, BUY, "o-1")))

        assert (code, reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.INSUFFICIENT_FUNDS,
        )
        assert "USDT" in details
        assert await commands(bus, service.topics) == []
        assert await balances(service.stub, 1) == {"USDT": (NOTIONAL // 2, 0)}


BAD_FIELDS = [
    ("side", {"side": common_pb2.SIDE_UNSPECIFIED}, RejectReason.INVALID_SIDE),
    ("side", {"side": 9}, RejectReason.INVALID_SIDE),
    ("order_type", {"order_type": 0}, RejectReason.INVALID_ORDER_TYPE),
    ("time_in_force", {"time_in_force": 0}, RejectReason.INVALID_TIME_IN_FORCE),
    (
        "self_trade_prevention",
        {"self_trade_prevention": 0},
        RejectReason.INVALID_SELF_TRADE_PREVENTION,
    ),
    ("symbol", {"symbol": "DOGE-USDT"}, RejectReason.UNKNOWN_SYMBOL),
    ("price", {"price": PRICE + 1}, RejectReason.INVALID_PRICE),
    ("client_order_id", {"client_order_id": "has space"}, RejectReason.INVALID_CLIENT_ORDER_ID),
]


@pytest.mark.parametrize(
    ("field", "change", "reason"),
    BAD_FIELDS,
    ids=[f"{field}-{reason.name}-{i}" for i, (field, _, reason) in enumerate(BAD_FIELDS)],
)
async def test_a_bad_field_is_invalid_argument_naming_it_and_changes_nothing(
    bus: Bus, prefix: str, field: str, change: dict[str, object], reason: RejectReason
) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        request = limit_order(1, BUY, "o-1")
        for name, value in change.items():
            setattr(request, name, value)
        call = service.stub.Reserve(request)
        code, got, details = await refused(call)

        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert details.startswith(field)
        info = error_info(await rpc_status.aio.from_call(call))
        assert info is not None
        assert info.metadata["field"] == field
        assert await commands(bus, service.topics) == []
        assert await balances(service.stub, 1) == {"USDT": (10 * USDT_UNIT, 0)}


async def test_a_resent_client_order_id_returns_the_original_order(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        first = await service.stub.Reserve(limit_order(1, BUY, "o-1"))
        again = await service.stub.Reserve(limit_order(1, BUY, "o-1"))
        # Two identical requests at once: one reserves, the other waits for its log write.
        concurrent = await asyncio.gather(
            service.stub.Reserve(limit_order(1, BUY, "o-2")),
            service.stub.Reserve(limit_order(1, BUY, "o-2")),
        )

        assert again.order_id == first.order_id
        assert (first.duplicate, again.duplicate) == (False, True)
        assert concurrent[0].order_id == concurrent[1].order_id != first.order_id
        assert sorted(r.duplicate for r in concurrent) == [False, True]
        assert new_orders(await commands(bus, service.topics)) == {(1, "o-1"): 1, (1, "o-2"): 1}
        assert await balances(service.stub, 1) == {"USDT": (8 * USDT_UNIT, 2 * NOTIONAL)}


async def test_funding_is_idempotent_by_reference_id(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix) as service:
        stub = service.stub
        first, again = [await deposit(stub, 7, "BTC", 5_000, "ref-1") for _ in range(2)]
        withdraw = ubscore_pb2.UBSCoreWithdrawRequest(
            account_id=7, asset="BTC", amount=2_000, reference_id="ref-2"
        )
        out, out_again = await asyncio.gather(stub.Withdraw(withdraw), stub.Withdraw(withdraw))
        withdraw.reference_id, withdraw.amount = "ref-3", 3_001
        code, reason, _ = await refused(stub.Withdraw(withdraw))

        assert (first.duplicate, again.duplicate) == (False, True)
        assert first.balance == again.balance
        assert sorted([out.duplicate, out_again.duplicate]) == [False, True]
        assert (code, reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.INSUFFICIENT_FUNDS,
        )
        logged = await ledger(bus, service.topics)
        assert [(e.kind, e.amount, e.reference_id) for e in logged] == [
            (LedgerEntryKind.DEPOSIT, 5_000, "ref-1"),
            (LedgerEntryKind.WITHDRAWAL, 2_000, "ref-2"),
        ]
        assert await balances(stub, 7) == {"BTC": (3_000, 0)}


async def test_a_reference_id_reused_for_another_amount_is_a_conflict(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix) as service:
        await deposit(service.stub, 7, "BTC", 5_000, "ref-1")
        code, reason, _ = await refused(
            service.stub.Deposit(
                ubscore_pb2.UBSCoreDepositRequest(
                    account_id=7, asset="BTC", amount=6_000, reference_id="ref-1"
                )
            )
        )

        assert (code, reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            RejectReason.REFERENCE_ID_CONFLICT,
        )
        assert len(await ledger(bus, service.topics)) == 1


async def test_cancel_checks_ownership_and_releases_only_on_order_done(
    bus: Bus, prefix: str
) -> None:
    async with running(bus, prefix) as service:
        stub = service.stub
        await deposit(stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        placed = await stub.Reserve(limit_order(1, BUY, "o-1"))
        by_stranger = ubscore_pb2.UBSCoreCancelRequest(account_id=2, order_id=placed.order_id)
        code, reason, _ = await refused(stub.Cancel(by_stranger))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER)
        assert len(await commands(bus, service.topics)) == 1

        own = ubscore_pb2.UBSCoreCancelRequest(account_id=1, client_order_id="o-1")
        canceled = await stub.Cancel(own)
        assert (canceled.order_id, canceled.client_order_id) == (placed.order_id, "o-1")
        order, cancel = await commands(bus, service.topics)
        assert isinstance(order, NewOrder)
        assert isinstance(cancel, CancelOrder)
        assert (cancel.order_id, cancel.account_id) == (placed.order_id, 1)
        # Logged is not canceled: the funds stay frozen until the matcher says it is done.
        assert await balances(stub, 1) == {"USDT": (9 * USDT_UNIT, NOTIONAL)}

        async with matcher(bus, service.topics) as engine:
            await engine.emit(done(order, OrderStatus.CANCELED, 0, 0))
        await eventually(
            lambda: balances(stub, 1),
            lambda now: now == {"USDT": (10 * USDT_UNIT, 0)},
            what="balances after OrderDone",
        )
        code, reason, _ = await refused(stub.Cancel(own))
        assert (code, reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.ORDER_ALREADY_DONE,
        )


async def test_get_balances_of_another_shard_is_invalid_account(bus: Bus, prefix: str) -> None:
    async with running(bus, prefix, shard_count=2, shard_index=1) as service:
        code, reason, details = await refused(
            service.stub.GetBalances(ubscore_pb2.UBSCoreGetBalancesRequest(account_id=4))
        )

        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_ACCOUNT)
        assert "shard" in details
        assert await balances(service.stub, 5) == {}


async def test_existing_topics_are_used_with_the_partitions_they_have(
    bus: Bus, prefix: str
) -> None:
    topics = LogTopics.with_prefix(prefix)
    await bus.create_topics(topics.specs(3))
    async with running(bus, prefix, partitions=2) as service:
        await deposit(service.stub, 1, "USDT", 10 * USDT_UNIT, "d-1")
        await service.stub.Reserve(limit_order(1, BUY, "o-1"))

        assert await bus.partitions(topics.orders) == 3
        assert new_orders(await commands(bus, topics)) == {(1, "o-1"): 1}
