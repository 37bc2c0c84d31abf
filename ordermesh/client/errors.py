"""Typed exceptions for every refusal, built from the gRPC status and its google.rpc.ErrorInfo.

The gateway ends a refused call with a status code, a message, and (in the grpc-status
details) an ErrorInfo whose `reason` is the RejectReason name ("INSUFFICIENT_FUNDS") and
whose `metadata` may name the `field` at fault. `from_rpc_error` turns that back into one
of the classes below, chosen by status code.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import grpc
from grpc_status import rpc_status

from ordermesh.grpcx.errors import error_info


class ClientError(Exception):
    """A call the gateway (or the connection to it) refused.

    Attributes:
        code: the gRPC status code.
        reason: google.rpc.ErrorInfo.reason, e.g. "INSUFFICIENT_FUNDS"; "" when none came.
        message: the human-readable message (names the field, rule and value).
        metadata: google.rpc.ErrorInfo.metadata, e.g. {"field": "price"}.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, reason)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def field(self) -> str:
        """The request field at fault (ErrorInfo.metadata["field"]), or ""."""
        return self.metadata.get("field", "")

    def __str__(self) -> str:
        return f"{self.reason or self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r},"
            f" message={self.message!r}, metadata={self.metadata!r})"
        )


class InvalidArgument(ClientError):
    """A field of the request is wrong (INVALID_ARGUMENT); `field` names it."""


class NotFound(ClientError):
    """No such order (or not yours) (NOT_FOUND)."""


class AlreadyExists(ClientError):
    """A reference_id was reused for a different request (ALREADY_EXISTS)."""


class PermissionDenied(ClientError):
    """The key may not do this, e.g. a trader key calling Deposit (PERMISSION_DENIED)."""


class Unauthenticated(ClientError):
    """No API key, or an unknown one (UNAUTHENTICATED)."""


class FailedPrecondition(ClientError):
    """Refused by the state of things, e.g. INSUFFICIENT_FUNDS (FAILED_PRECONDITION)."""


class ResourceExhausted(ClientError):
    """Rate limited or overloaded (RESOURCE_EXHAUSTED); slow down and try again."""


class Unavailable(ClientError):
    """The gateway or a service behind it cannot be reached (UNAVAILABLE); safe to retry."""


class DeadlineExceeded(ClientError):
    """No answer within the call's deadline (DEADLINE_EXCEEDED)."""


class Internal(ClientError):
    """A fault inside the system (INTERNAL)."""


class StreamGap(ClientError):
    """A stream lost events and resubscribing did not recover them."""


_BY_CODE: Final[Mapping[grpc.StatusCode, type[ClientError]]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.INTERNAL: Internal,
    }
)
_BY_NUMBER: Final[Mapping[int, grpc.StatusCode]] = MappingProxyType(
    {code.value[0]: code for code in grpc.StatusCode}
)


def error_class(code: grpc.StatusCode) -> type[ClientError]:
    """The exception class for a status code (ClientError itself for the unlisted ones)."""
    return _BY_CODE.get(code, ClientError)


def make_error(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str = "",
    metadata: Mapping[str, str] | None = None,
) -> ClientError:
    """An instance of the class for `code`."""
    return error_class(code)(code, message, reason=reason, metadata=metadata)


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Code number (UNKNOWN for a number not defined)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_rpc_error(error: grpc.RpcError) -> ClientError:
    """The typed exception for a failed call, with the ErrorInfo it carried (if any).

    `error` is a grpc.aio.AioRpcError or a failed grpc.Call: both have code(), details()
    and trailing_metadata(), which is what `rpc_status.from_call` reads.
    """
    call: grpc.Call = error  # type: ignore[assignment]  # a failed call is both
    code = call.code()
    message = call.details() or ""
    try:
        info = error_info(rpc_status.from_call(call))
    except ValueError:  # details that contradict the status itself: trust the status
        info = None
    if info is None:
        return make_error(code, message)
    return make_error(code, message, reason=info.reason, metadata=dict(info.metadata))
