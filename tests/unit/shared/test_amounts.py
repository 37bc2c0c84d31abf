from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh import amounts
from ordermesh.amounts import INT64_MAX, AmountError
from ordermesh.model import RejectReason

R = RejectReason.INVALID_PRICE


@given(scale=st.integers(0, 18), data=st.data())
def test_format_then_parse_is_identity(scale, data):
    atoms = data.draw(st.integers(1, INT64_MAX))
    text = amounts.format_atoms(atoms, scale)
    assert amounts.to_atoms(text, scale, field="x", reason=R) == atoms
    assert Decimal(text) == Decimal(atoms).scaleb(-scale)


@given(scale=st.integers(0, 18), atoms=st.integers(-INT64_MAX, INT64_MAX))
def test_format_is_the_exact_decimal_value(scale, atoms):
    text = amounts.format_atoms(atoms, scale)
    assert Decimal(text) == Decimal(atoms).scaleb(-scale)
    assert "e" not in text.lower()
    if "." in text:
        assert not text.endswith("0")


@given(whole=st.integers(0, 10**9), fraction=st.text("0123456789", min_size=1, max_size=6))
def test_parse_agrees_with_decimal(whole, fraction):
    text = f"{whole}.{fraction}"
    value = Decimal(text)
    if value == 0:
        return
    assert amounts.to_atoms(text, 6, field="x", reason=R) == int(value.scaleb(6))


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ("", R, "price is required"),
        ("abc", R, "price is not a decimal number"),
        ("1e5", R, "price is not a decimal number"),
        (" 1", R, "price is not a decimal number"),
        ("1 ", R, "price is not a decimal number"),
        ("+1", R, "price is not a decimal number"),
        ("1.", R, "price is not a decimal number"),
        (".5", R, "price is not a decimal number"),
        ("1,5", R, "price is not a decimal number"),
        ("0x10", R, "price is not a decimal number"),
        ("NaN", R, "price is not a decimal number"),
        ("Infinity", R, "price is not a decimal number"),
        ("١٢", R, "price is not a decimal number"),
        ("-1", R, "price must be positive, was -1"),
        ("-0.5", R, "price must be positive"),
        ("0", R, "price must be positive, was 0"),
        ("0.000", R, "price must be positive"),
        ("1.234", R, "price has 3 decimals, tick 0.01 allows 2, was 1.234"),
        ("9223372036854.78", RejectReason.AMOUNT_OVERFLOW, "price is too large"),
        ("9" * 65, RejectReason.AMOUNT_OVERFLOW, "too long to be an amount"),
    ],
)
def test_every_rejection_names_field_rule_and_value(text, reason, message):
    with pytest.raises(AmountError) as caught:
        amounts.to_atoms(text, 6, field="price", reason=R, decimals=2, rule="tick 0.01")
    assert caught.value.reason is reason
    assert caught.value.field == "price"
    assert message in str(caught.value)


def test_trailing_zeros_do_not_count_as_decimals():
    assert amounts.to_atoms("1.2300", 6, field="p", reason=R, decimals=2) == 1_230_000


def test_largest_amount_is_accepted_and_one_more_is_not():
    assert amounts.to_atoms(str(INT64_MAX), 0, field="q", reason=R) == INT64_MAX
    with pytest.raises(AmountError) as caught:
        amounts.to_atoms(str(INT64_MAX + 1), 0, field="q", reason=R)
    assert caught.value.reason is RejectReason.AMOUNT_OVERFLOW


def test_notional_is_exact_or_refuses():
    # 0.5 BTC at 42000.01 USDT: 21000.005 USDT = 21000005000 atoms at scale 6
    assert amounts.notional(42_000_010_000, 50_000_000, 8) == 21_000_005_000
    with pytest.raises(ArithmeticError):
        amounts.notional(1, 1, 8)


@given(amount=st.integers(0, INT64_MAX), bps=st.integers(0, 1000))
def test_fee_rounds_down_and_never_exceeds_amount(amount, bps):
    charged = amounts.fee(amount, bps)
    assert 0 <= charged <= amount
    assert charged * 10_000 <= amount * bps < (charged + 1) * 10_000


@given(budget=st.integers(0, 10**15), price=st.integers(1, 10**12))
def test_max_quantity_for_never_overspends(budget, price):
    quantity = amounts.max_quantity_for(budget, price, 8)
    assert quantity * price <= budget * 10**8 < (quantity + 1) * price


@pytest.mark.parametrize("value", [-1, INT64_MAX + 1])
def test_check_int64_refuses_out_of_range(value):
    with pytest.raises(AmountError) as caught:
        amounts.check_int64(value, field="total")
    assert caught.value.reason is RejectReason.AMOUNT_OVERFLOW
    assert "total is out of range" in str(caught.value)
