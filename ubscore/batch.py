"""ReserveBatch: many Reserve requests in one gRPC call, each answered as Reserve would be.

A gateway coalesces the orders it has in flight into one call, which saves the per-call cost
of gRPC in Python (the core reserves 150k+ orders/s; one unary call per order allows a few
thousand). Nothing else changes: each request goes through the same ack path as a unary
Reserve (`LogWriter.reserve_each`: `reserve` for each, at once, in the batch's order), so
dedup of a client_order_id repeated within a batch works as between two calls. Each answer
is the response Reserve would have sent, or its refusal as the serialized google.rpc.Status
that a unary call carries in its grpc-status-details-bin trailer, so a client decodes both
the same way. An answer is sent only once the log has every accepted order of the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

from ordermesh.grpcx import errors
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import ubscore_pb2
from ubscore.core import Reservation, ReserveRequest
from ubscore.metrics import UBSCoreMetrics
from ubscore.producer import LogWriter

MAX_BATCH: Final = 4096
"""The most requests one ReserveBatch may carry (the proto says so too)."""
_DETAILS_KEY: Final = "grpc-status-details-bin"
_METHOD: Final = "reserve"
"""Metrics count a batched request as a Reserve: the same work, the same outcomes."""

Decode = Callable[[ubscore_pb2.UBSCoreReserveRequest], ReserveRequest]
"""The unary Reserve's request decoding (enums checked), `ubscore.service.reserve_request`."""


async def reserve_all(
    writer: LogWriter,
    metrics: UBSCoreMetrics,
    batch: ubscore_pb2.UBSCoreReserveBatchRequest,
    decode: Decode,
) -> ubscore_pb2.UBSCoreReserveBatchResponse:
    """Reserve for every request of `batch` through `writer`; one result per request, in order.

    Raises:
        OrdermeshError: INVALID_ARGUMENT for more than MAX_BATCH requests (nothing reserved).
        Exception: what a unary Reserve would have failed with unexpectedly (a bug), once
            every request of the batch has finished.
    """
    check_size(batch.requests)
    # The core sees the requests in the batch's order.
    answers = await writer.reserve_each(batch.requests, decode)
    results = []
    outcomes: Counter[str] = Counter()
    for answer in answers:
        if isinstance(answer, OrdermeshError):
            outcomes[answer.reason.name] += 1
            results.append(ubscore_pb2.UBSCoreReserveResult(status=refusal(answer)))
            continue
        outcomes["duplicate" if answer.duplicate else "accepted"] += 1
        results.append(ubscore_pb2.UBSCoreReserveResult(reserved=reserve_response(answer)))
    for outcome, count in outcomes.items():  # one labelled counter look-up per outcome
        metrics.requests.labels(_METHOD, outcome).inc(count)
    return ubscore_pb2.UBSCoreReserveBatchResponse(results=results)


def reserve_response(reservation: Reservation) -> ubscore_pb2.UBSCoreReserveResponse:
    """What Reserve answers for `reservation`."""
    order = reservation.order
    return ubscore_pb2.UBSCoreReserveResponse(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        duplicate=reservation.duplicate,
        timestamp_ns=order.timestamp_ns,
        reserved_asset=reservation.reserved_asset,
        reserved_amount=reservation.reserved_amount,
    )


def refusal(error: OrdermeshError) -> bytes:
    """The serialized google.rpc.Status a unary call refused with `error` would carry."""
    for key, value in errors.to_rpc_status(error).trailing_metadata:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return value
    raise AssertionError("to_rpc_status made a status without details")  # pragma: no cover


def check_size(requests: Sequence[ubscore_pb2.UBSCoreReserveRequest]) -> None:
    """Refuse a batch larger than MAX_BATCH.

    Raises:
        OrdermeshError: INVALID_ARGUMENT naming the field `requests`.
    """
    if len(requests) > MAX_BATCH:
        raise OrdermeshError(
            RejectReason.INVALID_ARGUMENT,
            f"requests holds at most {MAX_BATCH} orders, was {len(requests)}",
            field="requests",
        )
