"""The service's pure adapter pieces: enum decoding, topic names, lifecycle, snapshot schedule."""

from __future__ import annotations

import asyncio

import pytest

from ordermesh.model import (
    OrdermeshError,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from ordermesh.runtime import FatalError
from ordermesh.v1 import common_pb2, ubscore_pb2
from ubscore.core import UBSCoreConfig
from ubscore.lifecycle import Lifecycle, LogTopics, Phase
from ubscore.service import decode_enum, reserve_request
from ubscore.snapshot import SnapshotSchedule, snapshot_key

ENUMS = [
    (Side, common_pb2.Side, "side", RejectReason.INVALID_SIDE),
    (OrderType, common_pb2.OrderType, "order_type", RejectReason.INVALID_ORDER_TYPE),
    (TimeInForce, common_pb2.TimeInForce, "time_in_force", RejectReason.INVALID_TIME_IN_FORCE),
    (
        SelfTradePrevention,
        common_pb2.SelfTradePrevention,
        "self_trade_prevention",
        RejectReason.INVALID_SELF_TRADE_PREVENTION,
    ),
]


@pytest.mark.parametrize(("enum", "proto", "field", "reason"), ENUMS)
def test_every_proto_enum_value_decodes_to_the_core_enum(enum, proto, field, reason) -> None:
    for member in enum:
        assert decode_enum(member.value, enum, proto, field, reason) is member
        assert proto.Name(member.value).endswith(member.name)


@pytest.mark.parametrize(("enum", "proto", "field", "reason"), ENUMS)
@pytest.mark.parametrize("value", [0, 99])
def test_unspecified_or_unknown_is_refused_naming_the_field(
    enum, proto, field, reason, value: int
) -> None:
    with pytest.raises(OrdermeshError) as refused:
        decode_enum(value, enum, proto, field, reason)
    assert (refused.value.reason, refused.value.field) == (reason, field)
    shown = proto.Name(0) if value == 0 else "99"
    assert refused.value.message.startswith(f"{field} must be one of ")
    assert refused.value.message.endswith(f"was {shown}")


def test_reserve_request_carries_every_field() -> None:
    request = reserve_request(
        ubscore_pb2.UBSCoreReserveRequest(
            account_id=5,
            symbol="BTC-USDT",
            side=common_pb2.SIDE_SELL,
            order_type=common_pb2.ORDER_TYPE_MARKET,
            time_in_force=common_pb2.TIME_IN_FORCE_IOC,
            quantity=7,
            quote_quantity=0,
            client_order_id="abc",
            post_only=False,
            self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_EXPIRE_BOTH,
        )
    )
    assert (request.account_id, request.symbol, request.client_order_id) == (5, "BTC-USDT", "abc")
    assert (request.side, request.order_type, request.time_in_force) == (
        Side.SELL,
        OrderType.MARKET,
        TimeInForce.IOC,
    )
    assert request.self_trade_prevention is SelfTradePrevention.EXPIRE_BOTH
    assert (request.price, request.quantity, request.quote_quantity) == (0, 7, 0)


def test_topic_names_carry_the_prefix_and_map_back() -> None:
    topics = LogTopics.with_prefix("blue.")
    assert topics.orders == "blue.ordermesh.orders"
    assert topics.snapshots == "blue.ordermesh.snapshots"
    assert topics.logical("blue.ordermesh.engine") == "ordermesh.engine"
    with pytest.raises(ValueError, match="none of ubscore's log topics"):
        topics.logical("ordermesh.engine")
    assert [spec.partitions for spec in topics.specs(3)] == [3, 3, 3]


class Health:
    def __init__(self) -> None:
        self.reports: list[bool] = []
        self.changed = asyncio.Condition()

    async def __call__(self, serving: bool) -> None:
        async with self.changed:
            self.reports.append(serving)
            self.changed.notify_all()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(lambda: len(self.reports) >= count)


@pytest.mark.asyncio
async def test_lifecycle_serves_only_when_live_and_reachable_and_fails_once() -> None:
    health = Health()
    lifecycle = Lifecycle(health)
    with pytest.raises(OrdermeshError, match="recovering") as refused:
        lifecycle.check()
    assert refused.value.reason is RejectReason.UNAVAILABLE

    await lifecycle.go_live()
    await lifecycle.set_reachable(False)
    await lifecycle.set_reachable(True)
    lifecycle.check()
    error = lifecycle.fail("produce outcome unknown", RuntimeError("timeout"))
    lifecycle.fail("a second failure")
    with pytest.raises(FatalError, match="produce outcome unknown") as stopped:
        await asyncio.wait_for(lifecycle.fail_stop(), 5)

    assert isinstance(stopped.value.__cause__, RuntimeError)
    assert error.reason is RejectReason.UNAVAILABLE
    assert "same client_order_id" in error.message
    assert lifecycle.phase is Phase.FAILED
    assert lifecycle.failure == "produce outcome unknown"
    await health.wait_for(4)  # the failure reports health from a task of its own
    assert health.reports == [True, False, True, False]
    await lifecycle.go_live()
    assert lifecycle.phase is Phase.FAILED


@pytest.mark.asyncio
async def test_waiting_for_live_ends_with_the_failure_if_recovery_fails() -> None:
    lifecycle = Lifecycle(Health())
    waiting = asyncio.ensure_future(lifecycle.wait_live())
    lifecycle.fail("the snapshot does not decode")
    with pytest.raises(FatalError, match="does not decode"):
        await asyncio.wait_for(waiting, 5)


def test_the_snapshot_schedule_is_due_every_n_records() -> None:
    schedule = SnapshotSchedule(10)
    schedule.note(9)
    assert not schedule.due.is_set()
    schedule.note(1)
    assert schedule.due.is_set()
    schedule.reset()
    assert not schedule.due.is_set()
    with pytest.raises(ValueError, match="at least 1"):
        SnapshotSchedule(0)
    assert snapshot_key(UBSCoreConfig(shard_index=2, shard_count=3)) == "ubscore/2"
