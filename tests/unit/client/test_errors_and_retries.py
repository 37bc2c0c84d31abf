"""A status with its ErrorInfo becomes the right exception; what is retried, and how often."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from ordermesh.client import errors
from ordermesh.client.retry import CallKind, RetryPolicy, call_with_retry
from ordermesh.grpcx.errors import to_rpc_status
from ordermesh.model import OrdermeshError, RejectReason


def failed_call(reason: RejectReason, message: str, field: str = "") -> AioRpcError:
    """A failed call exactly as the gateway ends one (grpcx.errors, the server's table)."""
    status = to_rpc_status(OrdermeshError(reason, message, field=field))
    return AioRpcError(
        status.code, Metadata(), Metadata(*status.trailing_metadata), details=status.details
    )


@pytest.mark.parametrize(
    ("reason", "cls", "code"),
    [
        (RejectReason.INVALID_PRICE, errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (RejectReason.UNKNOWN_SYMBOL, errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (RejectReason.UNAUTHENTICATED, errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (
            RejectReason.PERMISSION_DENIED,
            errors.PermissionDenied,
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            RejectReason.INSUFFICIENT_FUNDS,
            errors.FailedPrecondition,
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (RejectReason.RATE_LIMITED, errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (RejectReason.UNKNOWN_ORDER, errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (RejectReason.REFERENCE_ID_CONFLICT, errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (RejectReason.UNAVAILABLE, errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_every_server_reason_maps_to_its_class(
    reason: RejectReason, cls: type[errors.ClientError], code: grpc.StatusCode
) -> None:
    error = errors.from_rpc_error(failed_call(reason, "told why", field="price"))
    assert type(error) is cls
    assert (error.code, error.reason, error.message) == (code, reason.name, "told why")
    assert error.metadata == {"field": "price"}
    assert error.field == "price"
    assert str(error) == f"{reason.name}: told why"


def test_a_status_without_details_keeps_code_and_message() -> None:
    bare = AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, Metadata(), Metadata(), "too slow")
    error = errors.from_rpc_error(bare)
    assert type(error) is errors.DeadlineExceeded
    assert (error.reason, error.metadata, str(error)) == ("", {}, "DEADLINE_EXCEEDED: too slow")


def test_unlisted_codes_are_plain_client_errors_and_numbers_map_back() -> None:
    unlisted = AioRpcError(grpc.StatusCode.UNIMPLEMENTED, Metadata(), Metadata(), "no")
    assert type(errors.from_rpc_error(unlisted)) is errors.ClientError
    assert errors.status_code(9) is grpc.StatusCode.FAILED_PRECONDITION
    assert errors.status_code(999) is grpc.StatusCode.UNKNOWN
    assert isinstance(errors.make_error(grpc.StatusCode.INTERNAL, "x"), errors.Internal)


def test_the_policy_retries_unavailable_always_and_deadlines_only_for_reads() -> None:
    policy = RetryPolicy()
    unavailable, deadline = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED
    assert policy.retryable(unavailable, CallKind.KEYED_WRITE)
    assert policy.retryable(unavailable, CallKind.READ)
    assert policy.retryable(deadline, CallKind.READ)
    assert not policy.retryable(deadline, CallKind.KEYED_WRITE)
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        assert not policy.retryable(code, CallKind.READ)


def test_backoff_doubles_to_its_cap_with_jitter_between_half_and_all() -> None:
    policy = RetryPolicy(retries=10, backoff=0.1, max_backoff=1.0)
    assert [policy.delay(n, 0.999999) for n in range(6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], rel=1e-5
    )
    assert policy.delay(2, 0.0) == pytest.approx(0.2)
    assert policy.delay(10_000, 0.5) <= 1.0
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)


class Flaky:
    """Fails with the given codes in turn, then answers; records every request it saw."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.seen: list[str] = []

    async def __call__(self, request: str) -> str:
        self.seen.append(request)
        if self.codes:
            raise AioRpcError(self.codes.pop(0), Metadata(), Metadata(), "cut off")
        return f"done {request}"


@pytest.mark.asyncio
async def test_a_write_is_retried_with_the_same_request_until_it_lands() -> None:
    server = Flaky(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    policy = RetryPolicy(retries=3, backoff=0)
    answer = await call_with_retry(lambda: server("coid-1"), policy, CallKind.KEYED_WRITE)
    assert answer == "done coid-1"
    assert server.seen == ["coid-1"] * 3


@pytest.mark.asyncio
async def test_retries_run_out_with_the_last_error() -> None:
    server = Flaky(*[grpc.StatusCode.UNAVAILABLE] * 5)
    with pytest.raises(errors.Unavailable) as raised:
        await call_with_retry(lambda: server("x"), RetryPolicy(2, 0), CallKind.READ)
    assert len(server.seen) == 3
    assert isinstance(raised.value.__cause__, grpc.RpcError)


@pytest.mark.asyncio
async def test_a_timed_out_write_is_not_retried_but_a_read_is() -> None:
    write = Flaky(grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(errors.DeadlineExceeded):
        await call_with_retry(lambda: write("w"), RetryPolicy(3, 0), CallKind.KEYED_WRITE)
    assert write.seen == ["w"]
    read = Flaky(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert await call_with_retry(lambda: read("r"), RetryPolicy(3, 0), CallKind.READ) == "done r"


@pytest.mark.asyncio
async def test_refusals_are_never_retried() -> None:
    server = Flaky(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(errors.InvalidArgument):
        await call_with_retry(lambda: server("x"), RetryPolicy(3, 0), CallKind.READ)
    assert server.seen == ["x"]
