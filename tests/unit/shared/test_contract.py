"""The contract: generated code matches protos/, and the cores speak the proto's numbers."""

import filecmp
import subprocess
import sys
from enum import IntEnum
from pathlib import Path

import grpc
import pytest

from ordermesh import model
from ordermesh.grpcx import errors
from ordermesh.v1 import common_pb2

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_not_stale(tmp_path: Path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genproto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "ordermesh" / "v1"
    committed = ROOT / "ordermesh" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(
        p.name for p in committed.iterdir() if p.is_file() and p.suffix != ".pyc"
    )
    _, mismatch, errors_ = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert (mismatch, errors_) == ([], []), "ordermesh/v1 is stale: run `make proto` and commit"


@pytest.mark.parametrize(
    ("core", "proto", "prefix"),
    [
        (model.Side, common_pb2.Side, "SIDE_"),
        (model.OrderType, common_pb2.OrderType, "ORDER_TYPE_"),
        (model.TimeInForce, common_pb2.TimeInForce, "TIME_IN_FORCE_"),
        (model.SelfTradePrevention, common_pb2.SelfTradePrevention, "SELF_TRADE_PREVENTION_"),
        (model.OrderStatus, common_pb2.OrderStatus, "ORDER_STATUS_"),
        (model.LedgerEntryKind, common_pb2.LedgerEntryKind, "LEDGER_ENTRY_KIND_"),
        (model.RejectReason, common_pb2.RejectReason, "REJECT_REASON_"),
    ],
)
def test_core_enums_have_the_proto_names_and_numbers(core: type[IntEnum], proto, prefix: str):
    from_proto = {
        name.removeprefix(prefix): number
        for name, number in proto.items()
        if number != 0 or core is model.RejectReason
    }
    assert {member.name: member.value for member in core} == from_proto


def test_every_enum_has_an_unspecified_zero():
    for enum in common_pb2.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.name


def test_every_reason_maps_to_a_deliberate_status():
    for reason in model.RejectReason:
        if reason is model.RejectReason.UNSPECIFIED:
            continue
        assert errors.status_code(reason) not in {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (model.RejectReason.INVALID_PRICE, grpc.StatusCode.INVALID_ARGUMENT),
        (model.RejectReason.UNKNOWN_SYMBOL, grpc.StatusCode.INVALID_ARGUMENT),
        (model.RejectReason.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
        (model.RejectReason.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
        (model.RejectReason.INSUFFICIENT_FUNDS, grpc.StatusCode.FAILED_PRECONDITION),
        (model.RejectReason.RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (model.RejectReason.UNKNOWN_ORDER, grpc.StatusCode.NOT_FOUND),
        (model.RejectReason.REFERENCE_ID_CONFLICT, grpc.StatusCode.ALREADY_EXISTS),
        (model.RejectReason.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_status_table_follows_the_design(reason, code):
    assert errors.status_code(reason) is code
