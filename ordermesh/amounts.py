"""Decimal strings <-> integer atoms, and the one place where money is multiplied or divided.

Inside ordermesh every amount is an ``int`` count of an asset's smallest unit (an *atom*);
prices are quote atoms per one whole unit of the base asset. Decimal strings exist only at
the public API. Nothing here rounds silently: a value that does not fit is an error.
"""

from __future__ import annotations

import re

from ordermesh.model import OrdermeshError, RejectReason

INT64_MAX = 2**63 - 1
"""The largest amount the system carries (it travels as protobuf int64)."""

MAX_SCALE = 18
"""The most decimals an asset may have."""

BPS_DENOMINATOR = 10_000
"""Fees are in basis points: 1 bps = 1/10,000."""

_DECIMAL = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")
_MAX_TEXT = 64  # longer than any int64 amount at any scale can be written; refuse before parsing


_POW10 = tuple(int(10**i) for i in range(MAX_SCALE + 1))


def pow10(scale: int) -> int:
    """10**scale as an int, for scales 0..MAX_SCALE."""
    return _POW10[scale]


class AmountError(OrdermeshError):
    """A decimal string that is not an acceptable amount; names the field, rule and value."""


def decimals_of(text: str) -> int:
    """Count the significant decimals of a well-formed decimal string ("0.010" has 2)."""
    _, _, fraction = text.partition(".")
    return len(fraction.rstrip("0"))


def to_atoms(
    text: str,
    scale: int,
    *,
    field: str,
    reason: RejectReason,
    decimals: int | None = None,
    rule: str = "",
) -> int:
    """Parse a positive decimal string into atoms of an asset with `scale` decimals.

    Args:
        text: the value as the client sent it, e.g. "0.015".
        scale: the asset's decimals; the result is ``value * 10**scale``.
        field: the request field, named in every error.
        reason: the reason every error carries.
        decimals: the most significant decimals allowed (the tick's or lot's); `scale` if None.
        rule: what sets `decimals`, for the message ("tick", "lot"); the asset if empty.

    Returns:
        The amount in atoms, 1 to INT64_MAX.

    Raises:
        AmountError: missing, not a plain decimal, negative, zero, too precise, or too large.
    """
    if text == "":
        raise AmountError(reason, f"{field} is required", field=field)
    shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
    if len(text) > _MAX_TEXT:
        raise AmountError(
            RejectReason.AMOUNT_OVERFLOW,
            f"{field} is too long to be an amount ({len(text)} characters), was {shown}",
            field=field,
        )
    negative = text.startswith("-") and _DECIMAL.fullmatch(text[1:]) is not None
    match = _DECIMAL.fullmatch(text)
    if negative:
        raise AmountError(reason, f"{field} must be positive, was {shown}", field=field)
    if match is None:
        raise AmountError(
            reason,
            f"{field} is not a decimal number like 12.5 (digits, one optional point), "
            f"was {shown!r}",
            field=field,
        )
    allowed = scale if decimals is None else decimals
    found = decimals_of(text)
    if found > allowed:
        what = rule or "the asset"
        raise AmountError(
            reason,
            f"{field} has {found} decimals, {what} allows {allowed}, was {shown}",
            field=field,
        )
    fraction = (match["fraction"] or "").rstrip("0")
    atoms = int(match["whole"] + fraction.ljust(scale, "0"))
    if atoms > INT64_MAX:
        raise AmountError(
            RejectReason.AMOUNT_OVERFLOW,
            f"{field} is too large: {shown} is more than {INT64_MAX} atoms",
            field=field,
        )
    if atoms == 0:
        raise AmountError(reason, f"{field} must be positive, was {shown}", field=field)
    return atoms


def format_atoms(atoms: int, scale: int) -> str:
    """Render atoms as the shortest exact decimal string: 150000000 at scale 8 -> "1.5"."""
    sign = "-" if atoms < 0 else ""
    whole, fraction = divmod(abs(atoms), pow10(scale))
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(fraction).rjust(scale, '0').rstrip('0')}"


def notional(price: int, quantity: int, base_scale: int) -> int:
    """Quote atoms of `quantity` base atoms at `price` quote atoms per whole base unit.

    Markets are validated so that this is exact for every price on the tick grid and every
    quantity on the lot grid; anything else is a broken invariant, not a rounding case.

    Raises:
        ArithmeticError: the product is not a whole number of quote atoms.
    """
    whole, rest = divmod(price * quantity, pow10(base_scale))
    if rest:
        raise ArithmeticError(
            f"price {price} x quantity {quantity} is not a whole number of quote atoms "
            f"at base scale {base_scale}"
        )
    return whole


def max_quantity_for(budget: int, price: int, base_scale: int) -> int:
    """The most base atoms `budget` quote atoms buy at `price` (not rounded to a lot)."""
    return budget * pow10(base_scale) // price


def fee(amount: int, bps: int) -> int:
    """The fee on `amount` atoms at `bps` basis points, rounded down to a whole atom."""
    return amount * bps // BPS_DENOMINATOR


def check_int64(value: int, *, field: str) -> int:
    """Return `value` if it is 0..INT64_MAX, else raise AmountError(AMOUNT_OVERFLOW)."""
    if not 0 <= value <= INT64_MAX:
        raise AmountError(
            RejectReason.AMOUNT_OVERFLOW,
            f"{field} is out of range: {value} is not within 0..{INT64_MAX} atoms",
            field=field,
        )
    return value
