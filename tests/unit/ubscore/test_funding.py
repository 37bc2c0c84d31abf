import pytest

from ordermesh.amounts import INT64_MAX
from ordermesh.events import LedgerEvent
from ordermesh.model import (
    FEE_ACCOUNT,
    AccountId,
    Asset,
    LedgerEntryKind,
    OrdermeshError,
    RejectReason,
    Side,
)
from tests.unit.ubscore.harness import (
    BTC,
    BTC_UNIT,
    MARKETS,
    USDT,
    USDT_UNIT,
    Driver,
    limit,
    live_core,
)
from ubscore.core import (
    Balance,
    InsufficientFundsError,
    NotReadyError,
    ReferenceConflictError,
    UBSCore,
    UBSCoreConfig,
)


def test_a_deposit_credits_available_and_returns_the_event_to_log():
    core = live_core()
    funding = core.deposit(AccountId(7), BTC, 3 * BTC_UNIT, "wire-1", 42)
    assert funding.event == LedgerEvent(
        AccountId(7), BTC, LedgerEntryKind.DEPOSIT, 3 * BTC_UNIT, "wire-1", 42
    )
    assert not funding.duplicate
    assert funding.balance == Balance(BTC, 3 * BTC_UNIT, 0)


def test_a_withdrawal_debits_available():
    driver = Driver()
    driver.deposit(7, BTC, 3 * BTC_UNIT, "in")
    funding = driver.withdraw(7, BTC, BTC_UNIT, "out")
    assert funding.event.kind is LedgerEntryKind.WITHDRAWAL
    assert funding.balance == Balance(BTC, 2 * BTC_UNIT, 0)


def test_a_withdrawal_above_available_is_refused_even_with_funds_frozen():
    driver = Driver()
    driver.deposit(7, USDT, 10 * USDT_UNIT, "in")
    driver.reserve(limit(7, Side.BUY, 100 * USDT_UNIT, BTC_UNIT // 20, "b"))  # freezes 5 USDT
    before = driver.core.state_hash()
    with pytest.raises(InsufficientFundsError) as caught:
        driver.withdraw(7, USDT, 5 * USDT_UNIT + 1, "out")
    assert caught.value.reason is RejectReason.INSUFFICIENT_FUNDS
    assert (caught.value.required, caught.value.available) == (5 * USDT_UNIT + 1, 5 * USDT_UNIT)
    assert driver.core.state_hash() == before
    assert driver.withdraw(7, USDT, 5 * USDT_UNIT, "out").balance == Balance(USDT, 0, 5 * USDT_UNIT)


@pytest.mark.parametrize("kind", ["deposit", "withdraw"])
def test_the_same_reference_and_request_returns_the_original(kind: str):
    driver = Driver()
    driver.deposit(7, BTC, 5 * BTC_UNIT, "seed")
    first = getattr(driver, kind)(7, BTC, BTC_UNIT, "ref-1")
    before = driver.core.state_hash()
    again = getattr(driver, kind)(7, BTC, BTC_UNIT, "ref-1")
    assert again.duplicate
    assert again.event == first.event
    assert again.balance == first.balance
    assert driver.core.state_hash() == before


@pytest.mark.parametrize(
    ("account", "asset", "amount", "withdrawal"),
    [
        (7, BTC, 2 * BTC_UNIT, False),  # another amount
        (7, USDT, BTC_UNIT, False),  # another asset
        (7, BTC, BTC_UNIT, True),  # another direction
        (8, BTC, BTC_UNIT, False),  # another account
    ],
)
def test_the_same_reference_for_another_request_is_a_conflict(
    account: int, asset: Asset, amount: int, withdrawal: bool
):
    driver = Driver()
    driver.deposit(7, BTC, BTC_UNIT, "ref-1")
    before = driver.core.state_hash()
    with pytest.raises(ReferenceConflictError) as caught:
        (driver.withdraw if withdrawal else driver.deposit)(account, asset, amount, "ref-1")
    assert caught.value.reason is RejectReason.REFERENCE_ID_CONFLICT
    assert caught.value.field == "reference_id"
    assert driver.core.state_hash() == before


def test_another_accounts_reference_is_not_described():
    driver = Driver()
    driver.deposit(7, BTC, 123_456_789, "ref-1")
    with pytest.raises(ReferenceConflictError) as caught:
        driver.deposit(8, BTC, 123_456_789, "ref-1")
    assert "123456789" not in caught.value.message
    assert "7" not in caught.value.message


def test_a_reference_can_be_reused_once_it_left_every_window():
    driver = Driver(UBSCoreConfig(funding_window=2))
    driver.deposit(7, BTC, 1, "a")
    driver.deposit(7, BTC, 1, "b")
    driver.deposit(7, BTC, 1, "c")
    assert driver.deposit(7, BTC, 1, "b").duplicate
    assert not driver.deposit(7, BTC, 1, "a").duplicate
    assert not driver.deposit(8, BTC, 1, "b2").duplicate
    assert driver.core.balance(AccountId(7), BTC).available == 4


@pytest.mark.parametrize(
    ("request_", "reason", "field"),
    [
        ((7, Asset("DOGE"), 1, "r"), RejectReason.UNKNOWN_ASSET, "asset"),
        ((7, Asset(""), 1, "r"), RejectReason.UNKNOWN_ASSET, "asset"),
        ((7, BTC, 0, "r"), RejectReason.INVALID_AMOUNT, "amount"),
        ((7, BTC, -5, "r"), RejectReason.INVALID_AMOUNT, "amount"),
        ((7, BTC, INT64_MAX + 1, "r"), RejectReason.AMOUNT_OVERFLOW, "amount"),
        ((7, BTC, 1, ""), RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ((7, BTC, 1, "has space"), RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ((7, BTC, 1, "x" * 129), RejectReason.INVALID_REFERENCE_ID, "reference_id"),
        ((-1, BTC, 1, "r"), RejectReason.INVALID_ACCOUNT, "account_id"),
        ((2**64, BTC, 1, "r"), RejectReason.INVALID_ACCOUNT, "account_id"),
        ((2**63 - 1, BTC, 1, "r"), RejectReason.INVALID_ACCOUNT, "account_id"),
    ],
)
def test_a_refused_funding_names_its_reason_and_changes_nothing(
    request_: tuple[int, Asset, int, str], reason: RejectReason, field: str
):
    driver = Driver()
    driver.deposit(7, BTC, 1, "seed")
    core = driver.core
    before = core.state_hash()
    account, asset, amount, reference = request_
    for fund in (core.deposit, core.withdraw):
        with pytest.raises(OrdermeshError) as caught:
            fund(AccountId(account), asset, amount, reference, 2)
        assert caught.value.reason is reason, caught.value.message
        assert caught.value.field == field
    assert core.state_hash() == before


def test_deposits_never_take_an_asset_above_int64():
    driver = Driver()
    driver.deposit(1, BTC, INT64_MAX - 10, "big")
    with pytest.raises(OrdermeshError) as caught:
        driver.deposit(2, BTC, 11, "one-too-many")
    assert caught.value.reason is RejectReason.AMOUNT_OVERFLOW
    driver.deposit(2, BTC, 10, "exactly")
    assert sum(b.available for b in driver.core.snapshot().balances) == INT64_MAX


def test_the_fee_account_may_be_funded_and_swept():
    driver = Driver()
    driver.deposit(FEE_ACCOUNT, USDT, 5, "fee-in")
    assert driver.withdraw(FEE_ACCOUNT, USDT, 5, "fee-out").balance == Balance(USDT, 0, 0)


def test_a_replaying_core_refuses_funding():
    core = UBSCore(MARKETS)
    with pytest.raises(NotReadyError):
        core.deposit(AccountId(1), BTC, 1, "r", 1)
    with pytest.raises(NotReadyError):
        core.withdraw(AccountId(1), BTC, 1, "r", 1)
