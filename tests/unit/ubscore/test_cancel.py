import pytest

from ordermesh.events import CancelOrder, CancelRejected, EngineEvent
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderId,
    OrdermeshError,
    RejectReason,
    Side,
    Symbol,
)
from tests.unit.ubscore.harness import (
    BTC_USDT,
    MARKETS,
    USDT,
    USDT_UNIT,
    Driver,
    limit,
)
from ubscore.core import ENGINE_TOPIC, Balance, NotReadyError, UBSCore

PRICE = 100 * USDT_UNIT
QTY = 2 * 10**6  # 0.02 BTC: 2 USDT at PRICE


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.deposit(1, USDT, 100 * USDT_UNIT, "d1")
    d.deposit(2, USDT, 100 * USDT_UNIT, "d2")
    d.reserve(limit(1, Side.BUY, PRICE, QTY, "mine"))
    return d


def test_cancel_by_order_id_returns_the_command_and_releases_nothing(driver: Driver):
    command = driver.cancel(1, order_id=1)
    assert command == CancelOrder(
        BTC_USDT, AccountId(1), OrderId(1), ClientOrderId("mine"), driver.clock
    )
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 98 * USDT_UNIT, 2 * USDT_UNIT)
    assert len(driver.core.open_orders(AccountId(1))) == 1


def test_cancel_by_client_order_id_resolves_the_order_id(driver: Driver):
    command = driver.cancel(1, client_order_id="mine", symbol="BTC-USDT")
    assert (command.order_id, command.client_order_id, command.symbol) == (1, "mine", BTC_USDT)


def test_funds_come_back_only_when_the_matcher_says_done(driver: Driver):
    driver.cancel(1, client_order_id="mine")
    driver.drain()
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 100 * USDT_UNIT, 0)
    assert driver.core.open_orders(AccountId(1)) == ()


def test_cancels_have_no_dedup_and_a_repeat_is_answered_by_the_matcher(driver: Driver):
    first = driver.cancel(1, client_order_id="mine")
    second = driver.cancel(1, client_order_id="mine")
    assert first.order_id == second.order_id
    driver.drain()
    engine = driver.log.records(ENGINE_TOPIC, 0)
    assert isinstance(engine[-1], EngineEvent)
    assert isinstance(engine[-1].body, CancelRejected)
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 100 * USDT_UNIT, 0)


def test_a_client_order_id_in_the_dedup_window_can_still_be_cancelled(driver: Driver):
    assert driver.reserve(limit(1, Side.BUY, PRICE, QTY, "mine")).duplicate
    assert driver.cancel(1, client_order_id="mine").order_id == 1


@pytest.mark.parametrize(
    ("account", "order_id", "client_order_id", "symbol"),
    [
        (2, 1, "", ""),  # another account's order, by id
        (2, 0, "mine", ""),  # another account's order, by client id
        (1, 999, "", ""),  # no such order
        (1, 1, "other", ""),  # the id and the client id disagree
        (1, 1, "", "ETH-BTC"),  # on another symbol
        (1, 0, "nothing", ""),
    ],
)
def test_an_order_that_is_not_an_open_order_of_the_caller_is_unknown(
    driver: Driver, account: int, order_id: int, client_order_id: str, symbol: str
):
    before = driver.core.state_hash()
    with pytest.raises(OrdermeshError) as caught:
        driver.core.cancel(
            AccountId(account), Symbol(symbol), OrderId(order_id), ClientOrderId(client_order_id), 1
        )
    assert caught.value.reason is RejectReason.UNKNOWN_ORDER
    if account != 1:
        assert "account 1" not in caught.value.message
    assert driver.core.state_hash() == before


def test_another_accounts_order_looks_exactly_like_a_missing_one(driver: Driver):
    messages = []
    for order_id in (1, 999):
        with pytest.raises(OrdermeshError) as caught:
            driver.core.cancel(AccountId(2), Symbol(""), OrderId(order_id), ClientOrderId(""), 1)
        messages.append(caught.value.message.replace(str(order_id), "N"))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("account", "order_id", "client_order_id", "reason"),
    [
        (1, 0, "", RejectReason.INVALID_ORDER_ID),
        (1, -3, "", RejectReason.INVALID_ORDER_ID),
        (1, 2**64, "", RejectReason.INVALID_ORDER_ID),
        (1, 0, "bad id", RejectReason.INVALID_CLIENT_ORDER_ID),
        (0, 1, "", RejectReason.INVALID_ACCOUNT),
    ],
)
def test_a_malformed_cancel_is_refused(
    driver: Driver, account: int, order_id: int, client_order_id: str, reason: RejectReason
):
    with pytest.raises(OrdermeshError) as caught:
        driver.core.cancel(
            AccountId(account), BTC_USDT, OrderId(order_id), ClientOrderId(client_order_id), 1
        )
    assert caught.value.reason is reason


def test_a_done_order_is_already_done_by_client_id_and_unknown_by_id(driver: Driver):
    driver.cancel(1, order_id=1)
    driver.drain()
    with pytest.raises(OrdermeshError) as by_client:
        driver.cancel(1, client_order_id="mine")
    assert by_client.value.reason is RejectReason.ORDER_ALREADY_DONE
    with pytest.raises(OrdermeshError) as by_id:
        driver.cancel(1, order_id=1)
    assert by_id.value.reason is RejectReason.UNKNOWN_ORDER


def test_a_replaying_core_refuses_cancels():
    with pytest.raises(NotReadyError):
        UBSCore(MARKETS).cancel(AccountId(1), BTC_USDT, OrderId(1), ClientOrderId(""), 1)
