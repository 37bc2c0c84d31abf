"""One table from RejectReason to gRPC status, and google.rpc.ErrorInfo both ways."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ordermesh.model import OrdermeshError, RejectReason

DOMAIN: Final = "ordermesh.v1"
"""google.rpc.ErrorInfo.domain of every ordermesh error."""

_R = RejectReason
_C = grpc.StatusCode
_BY_GROUP: Final[Mapping[int, grpc.StatusCode]] = {
    1: _C.INVALID_ARGUMENT,  # validation
    2: _C.PERMISSION_DENIED,  # auth (UNAUTHENTICATED is listed below)
    3: _C.FAILED_PRECONDITION,  # risk
    4: _C.FAILED_PRECONDITION,  # matching
    5: _C.FAILED_PRECONDITION,  # funding
    9: _C.UNAVAILABLE,  # the system
}
_EXCEPTIONS: Final[Mapping[RejectReason, grpc.StatusCode]] = {
    _R.UNKNOWN_SYMBOL: _C.INVALID_ARGUMENT,
    _R.UNAUTHENTICATED: _C.UNAUTHENTICATED,
    _R.RATE_LIMITED: _C.RESOURCE_EXHAUSTED,
    _R.TOO_MANY_OPEN_ORDERS: _C.RESOURCE_EXHAUSTED,
    _R.UNKNOWN_ORDER: _C.NOT_FOUND,
    _R.REFERENCE_ID_CONFLICT: _C.ALREADY_EXISTS,
    _R.OVERLOADED: _C.RESOURCE_EXHAUSTED,
}


def status_code(reason: RejectReason) -> grpc.StatusCode:
    """The gRPC status a refusal for `reason` is reported with."""
    if reason in _EXCEPTIONS:
        return _EXCEPTIONS[reason]
    return _BY_GROUP.get(int(reason) // 100, _C.INTERNAL)


def reason_name(reason: RejectReason) -> str:
    """ErrorInfo.reason: the enum name without its prefix, e.g. "INSUFFICIENT_FUNDS"."""
    return reason.name


def to_rpc_status(error: OrdermeshError) -> grpc.Status:
    """A grpc.Status carrying code, message and a google.rpc.ErrorInfo for `error`."""
    code = status_code(error.reason)
    info = error_details_pb2.ErrorInfo(reason=reason_name(error.reason), domain=DOMAIN)
    if error.field:
        info.metadata["field"] = error.field
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=[detail]
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def abort(
    context: grpc.aio.ServicerContext[object, object], error: OrdermeshError
) -> NoReturn:
    """End the current call with `error` as status + ErrorInfo."""
    await context.abort_with_status(to_rpc_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a rich status, if it has one."""
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


async def reason_of(call: grpc.aio.Call) -> RejectReason | None:
    """The RejectReason a failed call carried in its ErrorInfo, or None if it had none."""
    info = error_info(await rpc_status.aio.from_call(call))
    if info is None or info.domain != DOMAIN:
        return None
    try:
        return RejectReason[info.reason]
    except KeyError:
        return None
