"""The arguments of queries and funding calls: symbols, sizes, times, amounts, references.

Pure, like `gateway.validation`: a request in, checked values out, or an `OrdermeshError`
naming the field (INVALID_ARGUMENT).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh import amounts
from ordermesh.markets import AssetSpec, Market, MarketTable
from ordermesh.model import MAX_ACCOUNT_ID, AccountId, OrdermeshError, RejectReason
from ordermesh.v1 import common_pb2, gateway_pb2

REFERENCE_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A funding reference_id: 1 to 64 letters, digits, '_', '.', ':' or '-'."""
DEFAULT_DEPTH: Final = 20
"""Levels per side of GetOrderBook when the request says 0."""
DEFAULT_PAGE: Final = 100
"""Rows of ListOrders, ListMyTrades and ListTrades when the request says 0."""
DEFAULT_CANDLES: Final = 500
"""Candles of GetCandles when the request says 0."""
MAX_ROWS: Final = 1000
"""The most levels, rows or candles one request may ask for."""
_SHOWN: Final = 40  # characters of a bad identifier repeated in a message


@dataclass(frozen=True, slots=True)
class ValidFunding:
    """A Deposit or Withdraw request in atoms."""

    account_id: AccountId
    asset: AssetSpec
    amount: int
    reference_id: str


@dataclass(frozen=True, slots=True)
class ValidCandles:
    """A GetCandlesRequest: times in Unix nanoseconds (0: unbounded)."""

    market: Market
    interval: int
    """A proto CandleInterval number other than UNSPECIFIED."""
    start_ns: int
    end_ns: int
    limit: int


def _invalid(reason: RejectReason, field: str, message: str) -> OrdermeshError:
    return OrdermeshError(reason, message, field=field)


def _shown(text: str) -> str:
    return repr(text[:_SHOWN] + ("..." if len(text) > _SHOWN else ""))


def optional_symbol(symbol: str, markets: MarketTable) -> Market | None:
    """The market of `symbol`, or None when it is empty (all markets).

    Raises:
        OrdermeshError: UNKNOWN_SYMBOL for a symbol not traded here.
    """
    return markets.market(symbol) if symbol else None


def bounded(value: int, field: str, default: int, most: int = MAX_ROWS) -> int:
    """`value`, or `default` when it is 0; at most `most`.

    Raises:
        OrdermeshError: INVALID_ARGUMENT naming `field` when above `most`.
    """
    if value == 0:
        return default
    if value > most:
        raise _invalid(
            RejectReason.INVALID_ARGUMENT,
            field,
            f"{field} must be 1..{most} (0 for {default}), was {value}",
        )
    return value


def candles(request: gateway_pb2.GetCandlesRequest, markets: MarketTable) -> ValidCandles:
    """Check a GetCandlesRequest: symbol, interval, times and limit.

    Raises:
        OrdermeshError: the first field found wrong.
    """
    market = markets.market(request.symbol)
    interval = request.interval
    known = [number for number in common_pb2.CandleInterval.values() if number]
    if interval not in known:
        names = ", ".join(common_pb2.CandleInterval.Name(number) for number in known)
        raise _invalid(
            RejectReason.INVALID_ARGUMENT,
            "interval",
            f"interval must be one of {names}, was {interval}",
        )
    start = _nanoseconds(request.start_time, "start_time") if request.HasField("start_time") else 0
    end = _nanoseconds(request.end_time, "end_time") if request.HasField("end_time") else 0
    if start and end and end <= start:
        raise _invalid(
            RejectReason.INVALID_ARGUMENT, "end_time", "end_time must be after start_time"
        )
    limit = bounded(request.limit, "limit", DEFAULT_CANDLES)
    return ValidCandles(market, interval, start, end, limit)


def _nanoseconds(stamp: Timestamp, field: str) -> int:
    if stamp.seconds < 0 or not 0 <= stamp.nanos < 1_000_000_000:
        raise _invalid(
            RejectReason.INVALID_ARGUMENT,
            field,
            f"{field} must be a time after 1970 with nanos 0..999999999, was "
            f"{stamp.seconds}s {stamp.nanos}ns",
        )
    value = stamp.seconds * 1_000_000_000 + stamp.nanos
    if value > amounts.INT64_MAX:
        raise _invalid(RejectReason.INVALID_ARGUMENT, field, f"{field} is too far in the future")
    return value


# -- funding ---------------------------------------------------------------------------------


def funding(
    request: gateway_pb2.DepositRequest | gateway_pb2.WithdrawRequest, markets: MarketTable
) -> ValidFunding:
    """Check a Deposit or Withdraw: account, asset, amount in the asset's scale, reference.

    Raises:
        OrdermeshError: the first field found wrong.
    """
    account = request.account_id
    if not 0 < account <= MAX_ACCOUNT_ID:
        problem = (
            "account_id is required (account 0 is the fee account, not funded through the API)"
            if account == 0
            else f"account_id must be 1..{MAX_ACCOUNT_ID}, was {account}"
        )
        raise _invalid(RejectReason.INVALID_ACCOUNT, "account_id", problem)
    asset = markets.asset(request.asset)
    amount = amounts.to_atoms(
        request.amount, asset.scale, field="amount", reason=RejectReason.INVALID_AMOUNT
    )
    reference = request.reference_id
    if REFERENCE_ID.fullmatch(reference) is None:
        rule = "1 to 64 of A-Z a-z 0-9 _ . : -"
        message = (
            f"reference_id is required: {rule}"
            if not reference
            else f"reference_id must be {rule}, was {_shown(reference)}"
        )
        raise _invalid(RejectReason.INVALID_REFERENCE_ID, "reference_id", message)
    return ValidFunding(AccountId(account), asset, amount, reference)
