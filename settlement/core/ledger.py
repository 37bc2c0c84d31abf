"""Double entry: the ledger legs of a trade and of a deposit or withdrawal.

Every movement is a set of legs whose amounts, per asset, sum to zero:

- a trade: the buyer pays the notional in quote and receives the quantity in base less
  the buyer's fee; the seller gives the quantity in base and receives the notional in quote
  less the seller's fee; the fee account receives both fees (each in the asset its payer
  receives; the buyer is the taker iff the taker side is BUY);
- a deposit credits the account and debits `EXTERNAL_ACCOUNT`; a withdrawal does the
  reverse.

So for every asset, Σ over customer and fee accounts = Σ deposits - Σ withdrawals
(DESIGN §4) and the external account holds minus that.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Final

from ordermesh.events import LedgerEvent, TradeExecuted
from ordermesh.markets import Market
from ordermesh.model import EXTERNAL_ACCOUNT, FEE_ACCOUNT, LedgerEntryKind, Side
from settlement.core.rows import LedgerLeg

"""The outside world: the contra account of every deposit and withdrawal.

Its balance is minus what customers (and the fee account) hold. No trading account may
have this id; an event that names it is refused as corrupt (see `check_funding`).
"""

_TRADE: Final = LedgerEntryKind.TRADE
_FEE: Final = LedgerEntryKind.FEE


class LedgerEventError(ValueError):
    """A funding event settlement cannot book: wrong kind, amount, asset or account."""


def trade_reference(symbol: str, trade_id: int) -> str:
    """The reference of a trade's legs: "SYMBOL:trade_id"."""
    return f"{symbol}:{trade_id}"


def trade_legs(market: Market, trade: TradeExecuted, timestamp_ns: int) -> list[LedgerLeg]:
    """The legs of one trade; per asset they sum to zero.

    Legs of one (account, asset, kind) are netted into one leg (a self-trade's buyer and
    seller are the same account) and zero legs (a zero fee) are left out, so each leg is
    unique by (reference, account, asset, kind).
    """
    base, quote = market.base.code, market.quote.code
    if trade.taker_side == Side.BUY:
        buyer, seller = trade.taker_account_id, trade.maker_account_id
        buyer_fee, seller_fee = trade.taker_fee, trade.maker_fee
    else:
        buyer, seller = trade.maker_account_id, trade.taker_account_id
        buyer_fee, seller_fee = trade.maker_fee, trade.taker_fee
    notional = trade.quote_quantity
    moves = (
        (buyer, quote, _TRADE, -notional),
        (buyer, base, _TRADE, trade.quantity - buyer_fee),
        (seller, base, _TRADE, -trade.quantity),
        (seller, quote, _TRADE, notional - seller_fee),
        (FEE_ACCOUNT, base, _FEE, buyer_fee),
        (FEE_ACCOUNT, quote, _FEE, seller_fee),
    )
    return _netted(moves, trade_reference(market.symbol, trade.trade_id), timestamp_ns)


def _netted(
    moves: Iterable[tuple[int, str, LedgerEntryKind, int]], reference: str, timestamp_ns: int
) -> list[LedgerLeg]:
    totals: dict[tuple[int, str, LedgerEntryKind], int] = {}
    for account, asset, kind, amount in moves:
        key = (account, asset, kind)
        totals[key] = totals.get(key, 0) + amount
    return [
        LedgerLeg(account, asset, kind, amount, reference, timestamp_ns)
        for (account, asset, kind), amount in totals.items()
        if amount
    ]


def check_funding(event: LedgerEvent, assets: Container[str]) -> None:
    """Refuse a funding event that cannot be booked.

    Raises:
        LedgerEventError: not a DEPOSIT or WITHDRAWAL, a non-positive amount, an asset
            the market table does not know, an empty reference_id, or the external account.
    """
    where = f"ledger event {event.reference_id!r} of account {event.account_id}"
    if event.kind not in (LedgerEntryKind.DEPOSIT, LedgerEntryKind.WITHDRAWAL):
        raise LedgerEventError(
            f"{where}: kind must be DEPOSIT or WITHDRAWAL, was {event.kind.name}"
        )
    if event.amount <= 0:
        raise LedgerEventError(f"{where}: amount must be positive, was {event.amount}")
    if event.asset not in assets:
        raise LedgerEventError(f"{where}: asset {event.asset!r} is not in the market table")
    if not event.reference_id:
        raise LedgerEventError(f"{where}: reference_id is empty")
    if event.account_id == EXTERNAL_ACCOUNT:
        raise LedgerEventError(f"{where}: account {EXTERNAL_ACCOUNT} is the external account")


def funding_legs(event: LedgerEvent) -> list[LedgerLeg]:
    """The two legs of a deposit (account +, external -) or a withdrawal (the reverse)."""
    signed = event.amount if event.kind == LedgerEntryKind.DEPOSIT else -event.amount
    return [
        LedgerLeg(
            event.account_id, event.asset, event.kind, signed, event.reference_id,
            event.timestamp_ns,
        ),
        LedgerLeg(
            EXTERNAL_ACCOUNT, event.asset, event.kind, -signed, event.reference_id,
            event.timestamp_ns,
        ),
    ]  # fmt: skip
