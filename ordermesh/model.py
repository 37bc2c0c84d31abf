"""Domain vocabulary shared by every core: ids, enums and reasons, with the proto's numbers."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import IntEnum
from typing import NewType, TypeVar, cast

AccountId = NewType("AccountId", int)
OrderId = NewType("OrderId", int)
TradeId = NewType("TradeId", int)
ClientOrderId = NewType("ClientOrderId", str)
Symbol = NewType("Symbol", str)
Asset = NewType("Asset", str)

FEE_ACCOUNT = AccountId(0)
"""Fees of both sides of every trade are credited here."""

EXTERNAL_ACCOUNT = AccountId(2**63 - 1)
"""The outside world: the contra account of deposits and withdrawals in the ledger."""

MAX_ACCOUNT_ID = AccountId(2**63 - 2)
"""The largest customer account id (ids fit a signed 64-bit column; above is reserved)."""


_E = TypeVar("_E", bound=IntEnum)


@functools.cache
def members(enum: type[IntEnum]) -> Mapping[int, IntEnum]:
    """`enum`'s members by number: one dict lookup, where calling the class costs several."""
    return {member.value: member for member in enum}


def member_of(enum: type[_E], value: int) -> _E | None:
    """The member of `enum` numbered `value`, or None."""
    return cast("_E | None", members(enum).get(value))  # the table holds only `enum`'s members


class Side(IntEnum):
    """Which side of the book an order is on."""

    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    """How an order is priced."""

    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    """How long an order may live."""

    GTC = 1
    IOC = 2
    FOK = 3


class SelfTradePrevention(IntEnum):
    """What the matcher does when an order would trade with its own account."""

    NONE = 1
    EXPIRE_TAKER = 2
    EXPIRE_MAKER = 3
    EXPIRE_BOTH = 4


class OrderStatus(IntEnum):
    """The life of an order."""

    PENDING_NEW = 1
    NEW = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    CANCELED = 5
    EXPIRED = 6
    REJECTED = 7


class LedgerEntryKind(IntEnum):
    """The kind of a movement of funds."""

    DEPOSIT = 1
    WITHDRAWAL = 2
    TRADE = 3
    FEE = 4


class RejectReason(IntEnum):
    """Why something was refused or ended; grouped by origin in hundreds, as in the proto."""

    UNSPECIFIED = 0
    # Validation: the request itself is wrong.
    UNKNOWN_SYMBOL = 100
    INVALID_SIDE = 101
    INVALID_ORDER_TYPE = 102
    INVALID_TIME_IN_FORCE = 103
    INVALID_PRICE = 104
    INVALID_QUANTITY = 105
    INVALID_QUOTE_QUANTITY = 106
    INVALID_CLIENT_ORDER_ID = 107
    INVALID_SELF_TRADE_PREVENTION = 108
    BELOW_MIN_QUANTITY = 109
    BELOW_MIN_NOTIONAL = 110
    AMOUNT_OVERFLOW = 111
    INVALID_AMOUNT = 112
    UNKNOWN_ASSET = 113
    INVALID_ACCOUNT = 114
    INVALID_REFERENCE_ID = 115
    INVALID_ORDER_ID = 116
    INVALID_RESPONSE_TYPE = 117
    INVALID_POST_ONLY = 118
    INVALID_ARGUMENT = 199
    # Authentication and authorization.
    UNAUTHENTICATED = 200
    PERMISSION_DENIED = 201
    # Risk and limits.
    INSUFFICIENT_FUNDS = 300
    RATE_LIMITED = 301
    TOO_MANY_OPEN_ORDERS = 302
    # Matching.
    UNKNOWN_ORDER = 400
    DUPLICATE_ORDER_ID = 401
    POST_ONLY_WOULD_TAKE = 402
    FOK_NOT_FILLABLE = 403
    NO_LIQUIDITY = 404
    SELF_TRADE_PREVENTED = 405
    ORDER_ALREADY_DONE = 406
    # Funding.
    REFERENCE_ID_CONFLICT = 500
    # The system: safe to retry with the same client_order_id or reference_id.
    UNAVAILABLE = 900
    OVERLOADED = 901


class OrdermeshError(Exception):
    """An expected, typed refusal: a business outcome with a machine-readable reason."""

    def __init__(self, reason: RejectReason, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message
