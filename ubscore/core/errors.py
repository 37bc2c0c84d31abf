"""What the balance authority refuses (typed, with a reason) and what stops it (broken invariants).

Refusals are `OrdermeshError`s: expected business outcomes, each with a `RejectReason` the
gateway maps to a gRPC status. A refusal never changes state. `InvariantError` is the other
kind: the log or the state contradicts itself, and the process must stop and rebuild from
snapshot + log rather than guess (DESIGN §2, fail-stop on doubt).
"""

from __future__ import annotations

from ordermesh.model import AccountId, Asset, OrdermeshError, RejectReason


class InvalidRequestError(OrdermeshError):
    """A request that breaks a rule other than an amount's grid (ids, field combinations)."""


class InsufficientFundsError(OrdermeshError):
    """The account's available balance does not cover what the request needs frozen or paid."""

    def __init__(
        self, account_id: AccountId, asset: Asset, required: int, available: int, message: str
    ) -> None:
        super().__init__(RejectReason.INSUFFICIENT_FUNDS, message)
        self.account_id = account_id
        self.asset = asset
        self.required = required
        """Atoms the request needs."""
        self.available = available
        """Atoms the account had available."""


class UnknownOrderError(OrdermeshError):
    """No open order of the caller's account matches (UNKNOWN_ORDER or ORDER_ALREADY_DONE).

    Another account's order is reported exactly like one that does not exist.
    """


class ReferenceConflictError(OrdermeshError):
    """A funding reference_id already used for a different request."""

    def __init__(self, reference_id: str, message: str) -> None:
        super().__init__(RejectReason.REFERENCE_ID_CONFLICT, message, field="reference_id")
        self.reference_id = reference_id


class NotReadyError(OrdermeshError):
    """The core is still replaying its log; the caller may retry (UNAVAILABLE)."""

    def __init__(self) -> None:
        super().__init__(
            RejectReason.UNAVAILABLE,
            "ubscore is replaying its log and does not serve requests yet; retry later",
        )


class InvariantError(RuntimeError):
    """A broken invariant: the log or the state is inconsistent. Stop, never clamp or skip."""


class SnapshotNotReadyError(RuntimeError):
    """A snapshot was asked for at a moment it could not be exact (see `UBSCore.snapshot`)."""
