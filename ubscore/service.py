"""gRPC ordermesh.v1.UBSCore: decode the request, hand it to the ack path, encode the answer.

Enums are checked here, before the core sees the request: UNSPECIFIED or a number the
contract does not define is INVALID_ARGUMENT with the field's own reason (INVALID_SIDE, ...).
Every refusal, from here or from the core, is an `OrdermeshError` reported as a gRPC status
with a google.rpc.ErrorInfo (`ordermesh.grpcx.errors`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, TypeVar

import grpc

from ordermesh.grpcx import errors
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    OrderId,
    OrdermeshError,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
    member_of,
)
from ordermesh.v1 import common_pb2, ubscore_pb2, ubscore_pb2_grpc
from ubscore import batch
from ubscore.core import Balance, ReserveRequest
from ubscore.core.rules import check_account
from ubscore.metrics import UBSCoreMetrics
from ubscore.producer import LogWriter

SERVICE_NAME = ubscore_pb2.DESCRIPTOR.services_by_name["UBSCore"].full_name
"""ordermesh.v1.UBSCore."""

_E = TypeVar("_E", bound=IntEnum)
_T = TypeVar("_T")
Context = grpc.aio.ServicerContext[Any, Any]


def decode_enum(
    value: int, enum: type[_E], proto_enum: Any, field: str, reason: RejectReason
) -> _E:
    """The core enum for a proto enum number.

    Raises:
        OrdermeshError: `reason` naming `field`, for UNSPECIFIED or an unknown number.
    """
    if value != 0:
        member = member_of(enum, value)
        if member is not None:
            return member
    allowed = ", ".join(proto_enum.Name(member.value) for member in enum)
    shown = proto_enum.Name(value) if value in proto_enum.values() else str(value)
    raise OrdermeshError(reason, f"{field} must be one of {allowed}, was {shown}", field=field)


def reserve_request(request: ubscore_pb2.UBSCoreReserveRequest) -> ReserveRequest:
    """The core's ReserveRequest for a gRPC one; enums checked, amounts left to the core.

    Raises:
        OrdermeshError: an enum that is UNSPECIFIED or unknown.
    """
    return ReserveRequest(
        account_id=AccountId(request.account_id),
        symbol=Symbol(request.symbol),
        side=decode_enum(request.side, Side, common_pb2.Side, "side", RejectReason.INVALID_SIDE),
        order_type=decode_enum(
            request.order_type,
            OrderType,
            common_pb2.OrderType,
            "order_type",
            RejectReason.INVALID_ORDER_TYPE,
        ),
        time_in_force=decode_enum(
            request.time_in_force,
            TimeInForce,
            common_pb2.TimeInForce,
            "time_in_force",
            RejectReason.INVALID_TIME_IN_FORCE,
        ),
        price=request.price,
        quantity=request.quantity,
        quote_quantity=request.quote_quantity,
        client_order_id=ClientOrderId(request.client_order_id),
        post_only=request.post_only,
        self_trade_prevention=decode_enum(
            request.self_trade_prevention,
            SelfTradePrevention,
            common_pb2.SelfTradePrevention,
            "self_trade_prevention",
            RejectReason.INVALID_SELF_TRADE_PREVENTION,
        ),
    )


def balance_to_pb(balance: Balance) -> ubscore_pb2.AccountBalance:
    """The gRPC form of one balance."""
    return ubscore_pb2.AccountBalance(
        asset=balance.asset, available=balance.available, frozen=balance.frozen
    )


class UBSCoreServicer(ubscore_pb2_grpc.UBSCoreServicer):
    """The balance authority over gRPC.

    Args:
        writer: the ack path every request goes through.
        metrics: requests by method and result.
    """

    def __init__(self, writer: LogWriter, metrics: UBSCoreMetrics) -> None:
        self._writer = writer
        self._metrics = metrics

    async def _answer(
        self,
        method: str,
        context: Context,
        work: Callable[[], Awaitable[_T]],
        result: Callable[[_T], str] = lambda _: "accepted",
    ) -> _T:
        try:
            answer = await work()
        except OrdermeshError as e:
            self._metrics.requests.labels(method, e.reason.name).inc()
            await errors.abort(context, e)
        self._metrics.requests.labels(method, result(answer)).inc()
        return answer

    async def Reserve(
        self, request: ubscore_pb2.UBSCoreReserveRequest, context: Context
    ) -> ubscore_pb2.UBSCoreReserveResponse:
        """Freeze the order's funds and log it; answer once the log has it."""

        async def work() -> ubscore_pb2.UBSCoreReserveResponse:
            return batch.reserve_response(await self._writer.reserve(reserve_request(request)))

        return await self._answer("reserve", context, work, _duplicate_or_accepted)

    async def ReserveBatch(
        self, request: ubscore_pb2.UBSCoreReserveBatchRequest, context: Context
    ) -> ubscore_pb2.UBSCoreReserveBatchResponse:
        """Reserve for each request of the batch, each answered as Reserve would (ubscore.batch)."""
        return await self._answer(
            "reserve_batch",
            context,
            lambda: batch.reserve_all(self._writer, self._metrics, request, reserve_request),
        )

    async def Cancel(
        self, request: ubscore_pb2.UBSCoreCancelRequest, context: Context
    ) -> ubscore_pb2.UBSCoreCancelResponse:
        """Log a cancel of one of the caller's open orders; answer once the log has it."""

        async def work() -> ubscore_pb2.UBSCoreCancelResponse:
            command = await self._writer.cancel(
                AccountId(request.account_id),
                Symbol(request.symbol),
                OrderId(request.order_id),
                ClientOrderId(request.client_order_id),
            )
            return ubscore_pb2.UBSCoreCancelResponse(
                order_id=command.order_id, client_order_id=command.client_order_id
            )

        return await self._answer("cancel", context, work)

    async def Deposit(
        self, request: ubscore_pb2.UBSCoreDepositRequest, context: Context
    ) -> ubscore_pb2.UBSCoreDepositResponse:
        """Credit an account (idempotent by reference_id); answer once the log has it."""

        async def work() -> ubscore_pb2.UBSCoreDepositResponse:
            funding = await self._writer.deposit(
                AccountId(request.account_id),
                Asset(request.asset),
                request.amount,
                request.reference_id,
            )
            return ubscore_pb2.UBSCoreDepositResponse(
                balance=balance_to_pb(funding.balance), duplicate=funding.duplicate
            )

        return await self._answer("deposit", context, work, _duplicate_or_accepted)

    async def Withdraw(
        self, request: ubscore_pb2.UBSCoreWithdrawRequest, context: Context
    ) -> ubscore_pb2.UBSCoreWithdrawResponse:
        """Debit an account's available funds (idempotent by reference_id), once logged."""

        async def work() -> ubscore_pb2.UBSCoreWithdrawResponse:
            funding = await self._writer.withdraw(
                AccountId(request.account_id),
                Asset(request.asset),
                request.amount,
                request.reference_id,
            )
            return ubscore_pb2.UBSCoreWithdrawResponse(
                balance=balance_to_pb(funding.balance), duplicate=funding.duplicate
            )

        return await self._answer("withdraw", context, work, _duplicate_or_accepted)

    async def GetBalances(
        self, request: ubscore_pb2.UBSCoreGetBalancesRequest, context: Context
    ) -> ubscore_pb2.UBSCoreGetBalancesResponse:
        """The account's balances as this shard holds them now."""

        async def work() -> ubscore_pb2.UBSCoreGetBalancesResponse:
            account_id = AccountId(request.account_id)
            balances = self._writer.balances(account_id)  # UNAVAILABLE unless live
            check_account(self._writer.core.config, account_id, trading=False)
            return ubscore_pb2.UBSCoreGetBalancesResponse(
                balances=[balance_to_pb(balance) for balance in balances]
            )

        return await self._answer("get_balances", context, work)


def _duplicate_or_accepted(response: Any) -> str:
    return "duplicate" if response.duplicate else "accepted"
