"""What the client is told when an upstream call fails without an ordermesh refusal."""

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from gateway.upstream import refused


@pytest.mark.parametrize("code", [code_pb2.UNAVAILABLE, code_pb2.CANCELLED])
def test_an_unknown_outcome_upstream_is_unavailable_and_safe_to_retry(code: int) -> None:
    status = status_pb2.Status(code=code, message="server stopping").SerializeToString()

    error = refused("ubscore", status, 5.0)

    assert error.status.code is grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UNAVAILABLE"
    assert "safe to retry with the same client_order_id" in error.status.details


def test_other_upstream_failures_keep_their_code() -> None:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message="boom").SerializeToString()

    error = refused("ubscore", status, 5.0)

    assert error.status.code is grpc.StatusCode.INTERNAL
    assert error.status.details == "ubscore: boom"
