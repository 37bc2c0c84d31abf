"""Deposits and withdrawals: checked, idempotent by reference_id, turned into LedgerEvents."""

from __future__ import annotations

from ordermesh import amounts
from ordermesh.amounts import INT64_MAX
from ordermesh.events import LedgerEvent
from ordermesh.markets import AssetSpec, MarketTable
from ordermesh.model import AccountId, LedgerEntryKind, RejectReason
from ubscore.core.accounts import LedgerState
from ubscore.core.errors import (
    InsufficientFundsError,
    InvalidRequestError,
    ReferenceConflictError,
)
from ubscore.core.rules import check_account, check_reference_id


def fund(state: LedgerState, markets: MarketTable, wanted: LedgerEvent) -> tuple[LedgerEvent, bool]:
    """Apply a deposit or withdrawal; return its event and whether it is a duplicate.

    Args:
        state: the core's state.
        markets: the known assets.
        wanted: the request, as the event it becomes if accepted.

    A reference_id seen before with the same account, kind, asset and amount returns the
    original event and changes nothing; with anything else it is a conflict.

    Raises:
        OrdermeshError: INVALID_ACCOUNT, INVALID_REFERENCE_ID, REFERENCE_ID_CONFLICT,
            UNKNOWN_ASSET, INVALID_AMOUNT, AMOUNT_OVERFLOW or INSUFFICIENT_FUNDS.
    """
    check_account(state.config, wanted.account_id, trading=False)
    check_reference_id(wanted.reference_id)
    original = _original(state, wanted)
    if original is not None:
        return original, True
    spec = markets.asset(wanted.asset)
    amount = wanted.amount
    if amount <= 0:
        raise InvalidRequestError(
            RejectReason.INVALID_AMOUNT,
            f"amount must be positive, was {amounts.format_atoms(amount, spec.scale)}",
            field="amount",
        )
    amounts.check_int64(amount, field="amount")
    if wanted.kind is LedgerEntryKind.DEPOSIT:
        _check_room(state, spec, wanted.account_id, amount)
    else:
        _check_funds(state, spec, wanted.account_id, amount)
    state.apply_funding(wanted)
    return wanted, False


def _original(state: LedgerState, wanted: LedgerEvent) -> LedgerEvent | None:
    reference_id = wanted.reference_id
    account = state.accounts.get(wanted.account_id)
    known = account.recent_funding.get(reference_id) if account is not None else None
    if known is None:
        if reference_id in state.reference_users:
            raise ReferenceConflictError(
                reference_id,
                f"reference_id {reference_id!r} was already used for another request",
            )
        return None
    if (known.kind, known.asset, known.amount) != (wanted.kind, wanted.asset, wanted.amount):
        raise ReferenceConflictError(
            reference_id,
            f"reference_id {reference_id!r} was already used for a {known.kind.name} of "
            f"{known.amount} {known.asset} atoms; this request is a {wanted.kind.name} of "
            f"{wanted.amount} {wanted.asset} atoms",
        )
    return known


def _check_room(state: LedgerState, spec: AssetSpec, account_id: AccountId, amount: int) -> None:
    # Keeping the total of each asset within int64 keeps every balance within it too.
    supply = state.supply.get(spec.code, 0)
    account = state.accounts.get(account_id)
    holding = account.holdings.get(spec.code) if account is not None else None
    held = holding.available + holding.frozen if holding is not None else 0
    if max(supply, held) + amount > INT64_MAX:
        raise InvalidRequestError(
            RejectReason.AMOUNT_OVERFLOW,
            f"a deposit of {amounts.format_atoms(amount, spec.scale)} {spec.code} would take "
            f"the {spec.code} held here above {INT64_MAX} atoms",
            field="amount",
        )


def _check_funds(state: LedgerState, spec: AssetSpec, account_id: AccountId, amount: int) -> None:
    available = state.available(account_id, spec.code)
    if amount > available:
        raise InsufficientFundsError(
            account_id,
            spec.code,
            amount,
            available,
            f"withdrawal of {amounts.format_atoms(amount, spec.scale)} {spec.code} exceeds "
            f"account {account_id}'s available {amounts.format_atoms(available, spec.scale)} "
            f"{spec.code}",
        )
