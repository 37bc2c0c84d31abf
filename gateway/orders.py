"""Order entry and funding: PlaceOrder and CancelOrder (ACK or RESULT), Deposit, Withdraw.

PlaceOrder goes to ubscore's Reserve, with the account of the caller's key; concurrent
orders (unary calls and OrderEntry streams alike) share ReserveBatch calls, each order
answered as its own Reserve would be (`Upstreams.reserve`). ACK answers once ubscore has
frozen the funds and logged the order (status PENDING_NEW). RESULT waits for the
matcher's first outcome, read from ordermesh.engine by the engine tail: the order
rested (NEW, or PARTIALLY_FILLED with the fills it took on the way), filled (FILLED),
or ended by its own terms (EXPIRED, REJECTED, with the reason). If that does not come
within the RESULT deadline, the answer is the ACK one (PENDING_NEW) rather than an error:
the order is in the log either way.

A resent client_order_id is the original order (ubscore answers duplicate=true, and so do
we): its outcome comes from the tail's memory of recent orders, else from settlement (the
status and filled amounts, without fills), else, for RESULT, from the tail as it arrives.

CancelOrder ACK answers once the cancel is in the log, with status UNSPECIFIED: the matcher
has not acted yet, so nothing may claim CANCELED (DESIGN §11). CancelOrder RESULT waits for
the matcher's answer to the cancel: CANCELED, or how the order had ended before it.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from gateway import arguments, codec, validation
from gateway.auth import Principal
from gateway.metrics import GatewayMetrics
from gateway.outcomes import CommandGroup, OrderOutcome, order_outcome
from gateway.results import EngineTail, Waiter, about
from gateway.upstream import UpstreamError, Upstreams
from gateway.validation import ResponseType, ValidOrder
from ordermesh.events import OrderDone
from ordermesh.markets import Market, MarketTable
from ordermesh.model import AccountId, OrderId, OrdermeshError, OrderStatus, RejectReason
from ordermesh.v1 import common_pb2, gateway_pb2, settlement_pb2, ubscore_pb2

log = structlog.get_logger(__name__)

_MARGIN_SECONDS: Final = 0.05
"""A RESULT answers this long before the client's own deadline, so the answer arrives."""
_LIVE_OR_UNKNOWN: Final = {common_pb2.ORDER_STATUS_UNSPECIFIED, common_pb2.ORDER_STATUS_PENDING_NEW}


class Deadline:
    """The time a call must be answered by: the client's deadline, if it gave one."""

    def __init__(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._at = None if seconds is None else loop.time() + seconds

    def remaining(self) -> float | None:
        """Seconds left, or None without a client deadline."""
        return None if self._at is None else self._at - self._loop.time()

    def within(self, most: float) -> float:
        """At most `most` seconds, ending a margin before the client's deadline."""
        left = self.remaining()
        return most if left is None else max(min(most, left - _MARGIN_SECONDS), 0.0)


def reserve_request(account: AccountId, order: ValidOrder) -> ubscore_pb2.UBSCoreReserveRequest:
    """The Reserve request to ubscore for a validated order of `account`."""
    return ubscore_pb2.UBSCoreReserveRequest(
        account_id=account,
        symbol=order.market.symbol,
        side=int(order.side),  # type: ignore[arg-type]  # same numbers as the proto enums
        order_type=int(order.order_type),  # type: ignore[arg-type]
        time_in_force=int(order.time_in_force),  # type: ignore[arg-type]
        price=order.price,
        quantity=order.quantity,
        quote_quantity=order.quote_quantity,
        client_order_id=order.client_order_id,
        post_only=order.post_only,
        self_trade_prevention=int(order.self_trade_prevention),  # type: ignore[arg-type]
    )


class OrderDesk:
    """PlaceOrder, CancelOrder and funding, routed to ubscore.

    Args:
        markets: the market table.
        upstream: the internal services.
        tail: the engine tail, for RESULT answers.
        metrics: orders by result and reason.
        result_seconds: how long a RESULT waits for the matcher at most.
    """

    def __init__(
        self,
        markets: MarketTable,
        upstream: Upstreams,
        tail: EngineTail,
        metrics: GatewayMetrics,
        result_seconds: float,
    ) -> None:
        self._markets = markets
        self._upstream = upstream
        self._tail = tail
        self._metrics = metrics
        self._result_seconds = result_seconds

    async def place(
        self, principal: Principal, request: gateway_pb2.PlaceOrderRequest, deadline: Deadline
    ) -> gateway_pb2.PlaceOrderResponse:
        """Validate, reserve, and answer at ACK or RESULT level."""
        account = principal.trading_account()
        try:
            order = validation.place_order(request, self._markets)
        except OrdermeshError as e:
            self._metrics.orders.labels("refused", e.reason.name).inc()
            raise
        reserve = reserve_request(account, order)
        outcome: OrderOutcome | None
        if order.response_type is ResponseType.RESULT:
            self._tail.require_positioned()
            with self._tail.placing(account, order.client_order_id) as waiter:
                reserved = await self._reserve(reserve, deadline)
                outcome = await self._result(account, reserved, order.market, waiter, deadline)
        else:
            reserved = await self._reserve(reserve, deadline)
            outcome = None
            if reserved.duplicate:
                outcome = await self._known(account, reserved.order_id, order.market, deadline)
        result = "duplicate" if reserved.duplicate else "accepted"
        if outcome is not None:
            result = f"{result} {outcome.status.name}"
        reason = outcome.reason.name if outcome is not None else "UNSPECIFIED"
        self._metrics.orders.labels(result, reason).inc()
        return codec.place_response(reserved, order.market, outcome)

    async def _reserve(
        self, request: ubscore_pb2.UBSCoreReserveRequest, deadline: Deadline
    ) -> ubscore_pb2.UBSCoreReserveResponse:
        try:
            return await self._upstream.reserve(request, within=deadline.remaining())
        except UpstreamError as e:
            self._metrics.orders.labels("refused", e.reason).inc()
            raise

    async def _result(
        self,
        account: AccountId,
        reserved: ubscore_pb2.UBSCoreReserveResponse,
        market: Market,
        waiter: Waiter,
        deadline: Deadline,
    ) -> OrderOutcome | None:
        if reserved.duplicate:
            known = await self._known(account, reserved.order_id, market, deadline)
            if known is not None:
                return known
        seconds = deadline.within(self._result_seconds)
        group = await waiter.wait_for(about(reserved.order_id), seconds)
        if group is None:
            self._metrics.result_timeouts.labels("PlaceOrder").inc()
            log.info("no outcome in time", order_id=reserved.order_id, seconds=seconds)
            return None
        return order_outcome(group, market)

    async def _known(
        self, account: AccountId, order_id: int, market: Market, deadline: Deadline
    ) -> OrderOutcome | None:
        """The outcome of an earlier order, if the tail or settlement knows it."""
        group = self._tail.recent(order_id)
        if group is not None:
            return order_outcome(group, market)
        settlement = self._upstream.settlement
        request = settlement_pb2.SettlementGetOrderRequest(account_id=account, order_id=order_id)
        try:
            answer = await self._upstream.call(
                "settlement", settlement.GetOrder, request, within=deadline.remaining()
            )
        except UpstreamError as e:
            log.info("duplicate order not settled", order_id=order_id, error=str(e))
            return None
        settled = answer.order
        if settled.status in _LIVE_OR_UNKNOWN:
            return None
        return OrderOutcome(
            order_id=OrderId(order_id),
            status=OrderStatus(settled.status),
            reason=_reason(settled.reason),
            filled_quantity=settled.filled_quantity,
            filled_quote_quantity=settled.filled_quote_quantity,
            fills=(),
        )

    async def cancel(
        self, principal: Principal, request: gateway_pb2.CancelOrderRequest, deadline: Deadline
    ) -> gateway_pb2.CancelOrderResponse:
        """Validate, log the cancel through ubscore, and answer at ACK or RESULT level."""
        account = principal.trading_account()
        cancel = validation.cancel_order(request, self._markets)
        call = ubscore_pb2.UBSCoreCancelRequest(
            account_id=account,
            symbol=cancel.market.symbol,
            order_id=cancel.order_id,
            client_order_id=cancel.client_order_id,
        )
        ubscore = self._upstream.ubscore
        status: OrderStatus | None = None
        if cancel.response_type is ResponseType.RESULT:
            self._tail.require_positioned()
            with self._tail.canceling(account, cancel.order_id, cancel.client_order_id) as waiter:
                acked = await self._upstream.call(
                    "ubscore", ubscore.Cancel, call, within=deadline.remaining()
                )
                seconds = deadline.within(self._result_seconds)
                group = await waiter.wait_for(about(acked.order_id), seconds)
            status = self._cancel_status(OrderId(acked.order_id), group)
        else:
            acked = await self._upstream.call(
                "ubscore", ubscore.Cancel, call, within=deadline.remaining()
            )
        return gateway_pb2.CancelOrderResponse(
            order_id=acked.order_id,
            client_order_id=acked.client_order_id,
            symbol=cancel.market.symbol,
            status=0 if status is None else int(status),  # type: ignore[arg-type]
        )

    def _cancel_status(self, order_id: OrderId, group: CommandGroup | None) -> OrderStatus | None:
        if group is None:
            self._metrics.result_timeouts.labels("CancelOrder").inc()
            return None
        first = group.events[0].body
        if isinstance(first, OrderDone):
            return first.status
        ended = self._tail.ended(order_id)
        if ended is not None:
            return ended
        raise OrdermeshError(
            RejectReason.ORDER_ALREADY_DONE,
            f"order {order_id} had already ended when the cancel reached the matcher;"
            " GetOrder tells how it ended",
        )

    async def deposit(
        self, principal: Principal, request: gateway_pb2.DepositRequest, deadline: Deadline
    ) -> gateway_pb2.DepositResponse:
        """Credit an account (admin keys only)."""
        principal.require_admin("Deposit")
        funding = arguments.funding(request, self._markets)
        ubscore = self._upstream.ubscore
        answer = await self._upstream.call(
            "ubscore",
            ubscore.Deposit,
            ubscore_pb2.UBSCoreDepositRequest(
                account_id=funding.account_id,
                asset=funding.asset.code,
                amount=funding.amount,
                reference_id=funding.reference_id,
            ),
            within=deadline.remaining(),
        )
        return gateway_pb2.DepositResponse(
            balance=codec.balance_to_pb(answer.balance, funding.asset), duplicate=answer.duplicate
        )

    async def withdraw(
        self, principal: Principal, request: gateway_pb2.WithdrawRequest, deadline: Deadline
    ) -> gateway_pb2.WithdrawResponse:
        """Debit an account's available funds (admin keys only)."""
        principal.require_admin("Withdraw")
        funding = arguments.funding(request, self._markets)
        ubscore = self._upstream.ubscore
        answer = await self._upstream.call(
            "ubscore",
            ubscore.Withdraw,
            ubscore_pb2.UBSCoreWithdrawRequest(
                account_id=funding.account_id,
                asset=funding.asset.code,
                amount=funding.amount,
                reference_id=funding.reference_id,
            ),
            within=deadline.remaining(),
        )
        return gateway_pb2.WithdrawResponse(
            balance=codec.balance_to_pb(answer.balance, funding.asset), duplicate=answer.duplicate
        )


def _reason(value: int) -> RejectReason:
    try:
        return RejectReason(value)
    except ValueError:
        return RejectReason.UNSPECIFIED
