import random
from dataclasses import replace
from typing import Any

import pytest

from ordermesh.events import EngineEvent, LedgerEvent, NewOrder, OrderDone, TradeExecuted
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from tests.unit.ubscore.harness import (
    BTC,
    BTC_UNIT,
    BTC_USDT,
    ETH,
    ETH_BTC,
    ETH_UNIT,
    MARKETS,
    USDT,
    USDT_UNIT,
    Driver,
    Log,
    apply_record,
    limit,
    market,
    replay,
)
from ubscore.core import (
    ENGINE_TOPIC,
    LEDGER_TOPIC,
    ORDERS_TOPIC,
    Balance,
    InvariantError,
    OpenOrder,
    SnapshotNotReadyError,
    UBSCore,
    UBSCoreConfig,
)

PRICE = 100 * USDT_UNIT
QTY = 2 * 10**6


def busy_driver(config: UBSCoreConfig | None = None) -> Driver:
    """Funding, orders on two symbols, trades, cancels and done orders, all in the log."""
    driver = Driver(config)
    driver.deposit(1, USDT, 1_000 * USDT_UNIT, "u1")
    driver.deposit(2, BTC, 2 * BTC_UNIT, "b2")
    driver.deposit(2, ETH, 10 * ETH_UNIT, "e2")
    driver.deposit(3, BTC, BTC_UNIT, "b3")
    driver.reserve(limit(1, Side.BUY, PRICE + USDT_UNIT, 3 * QTY, "b1"))
    driver.reserve(limit(2, Side.SELL, PRICE, 2 * QTY, "s1"))
    driver.reserve(market(1, Side.BUY, quote_quantity=20 * USDT_UNIT, client_order_id="mb"))
    driver.reserve(limit(2, Side.SELL, 5_000_000, 10**7, "x1", symbol=ETH_BTC))
    driver.reserve(limit(3, Side.BUY, 5_000_000, 10**7, "x2", symbol=ETH_BTC))
    driver.drain()
    driver.matcher.trade(BTC_USDT, 0, 0, 2)
    driver.matcher.trade(BTC_USDT, 1, 0, 100)
    driver.matcher.trade(ETH_BTC, 0, 0, 1)
    driver.matcher.expire(BTC_USDT, 1)
    driver.cancel(3, client_order_id="x2")
    driver.withdraw(2, ETH, ETH_UNIT, "w2")
    driver.drain()
    return driver


def test_snapshot_restore_gives_the_same_state_and_hash():
    driver = busy_driver()
    snapshot = driver.core.snapshot()
    restored = UBSCore.restore(snapshot, MARKETS)
    assert restored.replaying
    restored.finish_replay()
    assert restored.snapshot() == snapshot
    assert restored.state_hash() == driver.core.state_hash() == snapshot.digest()
    for account in (0, 1, 2, 3):
        assert restored.balances(AccountId(account)) == driver.core.balances(AccountId(account))
        assert restored.open_orders(AccountId(account)) == driver.core.open_orders(
            AccountId(account)
        )


def test_a_restored_core_carries_on_where_the_snapshot_stopped():
    driver = busy_driver()
    core = UBSCore.restore(driver.core.snapshot(), MARKETS)
    core.finish_replay()
    last_id = max(o.order.order_id for o in driver.core.snapshot().open_orders)
    assert core.reserve(limit(1, Side.BUY, PRICE, QTY, "b1"), 9).duplicate
    assert core.deposit(AccountId(1), USDT, 1_000 * USDT_UNIT, "u1", 9).duplicate
    fresh = core.reserve(limit(1, Side.BUY, PRICE, QTY, "new"), 9)
    assert fresh.order.order_id > last_id
    cancel = core.cancel(AccountId(1), BTC_USDT, OrderId(0), ClientOrderId("new"), 9)
    assert cancel.order_id == fresh.order.order_id


def test_every_interleaving_of_the_three_topics_rebuilds_the_same_state():
    driver = busy_driver()
    expected = driver.core.state_hash()
    for seed in range(25):
        assert replay(driver.log, None, random.Random(seed)).state_hash() == expected


def test_the_engine_topic_may_be_replayed_before_the_orders_it_answers():
    driver = busy_driver()
    core = UBSCore(MARKETS)
    for topic in (ENGINE_TOPIC, LEDGER_TOPIC, ORDERS_TOPIC):
        for (name, partition), records in sorted(driver.log.partitions.items()):
            if name == topic:
                for offset, record in enumerate(records):
                    apply_record(core, name, partition, offset, record)
    core.finish_replay()
    assert core.state_hash() == driver.core.state_hash()


def test_a_snapshot_then_any_interleaving_of_the_rest_matches_the_straight_run():
    driver = busy_driver()
    snapshot = driver.take_snapshot()
    driver.deposit(3, USDT, 50 * USDT_UNIT, "u3")
    driver.reserve(limit(3, Side.BUY, PRICE, QTY, "late"))
    driver.reserve(limit(2, Side.SELL, PRICE, QTY, "late-s"))
    driver.drain()
    driver.matcher.trade(BTC_USDT, 0, 0, 100)
    driver.drain()
    expected = driver.core.state_hash()
    for seed in range(25):
        assert replay(driver.log, snapshot, random.Random(seed)).state_hash() == expected


def test_a_replay_ending_with_engine_events_for_missing_orders_stops():
    driver = busy_driver()
    core = UBSCore(MARKETS)
    for offset, record in enumerate(driver.log.records(ENGINE_TOPIC, 0)):
        apply_record(core, ENGINE_TOPIC, 0, offset, record)
    with pytest.raises(InvariantError, match="no command"):
        core.finish_replay()


def test_a_replay_ending_with_a_negative_balance_stops():
    driver = busy_driver()
    core = UBSCore(MARKETS)
    for offset, record in enumerate(driver.log.records(ORDERS_TOPIC, 0)):
        apply_record(core, ORDERS_TOPIC, 0, offset, record)
    with pytest.raises(InvariantError, match="available -"):
        core.finish_replay()


def test_a_reservation_whose_command_never_reached_the_log_is_gone_after_a_restart():
    driver = Driver()
    driver.deposit(1, USDT, 10 * USDT_UNIT, "u1")
    lost = driver.core.reserve(limit(1, Side.BUY, PRICE, QTY, "lost"), 5)  # the produce failed
    assert driver.core.balance(AccountId(1), USDT).frozen == 2 * USDT_UNIT
    with pytest.raises(SnapshotNotReadyError, match="not in the log"):
        driver.core.snapshot()
    restarted = replay(driver.log, None, random.Random(0))
    assert restarted.balance(AccountId(1), USDT) == Balance(USDT, 10 * USDT_UNIT, 0)
    again = restarted.reserve(limit(1, Side.BUY, PRICE, QTY, "lost"), 6)
    assert not again.duplicate
    assert again.order.order_id == lost.order.order_id


def test_replayed_records_are_applied_once():
    driver = busy_driver()
    core = UBSCore(MARKETS)
    for (topic, partition), records in sorted(driver.log.partitions.items()):
        for offset, record in enumerate(records):
            apply_record(core, topic, partition, offset, record)
            apply_record(core, topic, partition, offset, record)
    core.finish_replay()
    assert core.state_hash() == driver.core.state_hash()


def test_a_partition_never_read_resumes_from_its_beginning():
    core = UBSCore(MARKETS)
    assert core.next_offset(ENGINE_TOPIC, 3) == 0
    core.apply_engine(
        EngineEvent(
            BTC_USDT,
            1,
            0,
            0,
            b"",
            OrderDone(
                OrderId(7),
                AccountId(1),
                ClientOrderId("a"),
                OrderStatus.CANCELED,
                RejectReason.UNSPECIFIED,
                0,
                0,
                0,
                Side.BUY,
                1,
            ),
        ),
        3,
        41,
    )
    assert core.next_offset(ENGINE_TOPIC, 3) == 42


def test_a_live_core_stops_on_a_command_it_did_not_issue():
    driver = busy_driver()
    order = driver.log.records(ORDERS_TOPIC, 0)[0]
    assert isinstance(order, NewOrder)
    with pytest.raises(InvariantError, match="did not issue"):
        driver.core.apply_command(replace(order, order_id=OrderId(10_001)), 0, 1_000)
    funding = driver.log.records(LEDGER_TOPIC, 1)[0]
    assert isinstance(funding, LedgerEvent)
    with pytest.raises(InvariantError, match="not issued"):
        driver.core.apply_ledger(replace(funding, reference_id="other"), 1, 1_000)


def test_a_logged_command_that_differs_from_the_issued_one_stops_the_core():
    driver = Driver()
    driver.deposit(1, USDT, 10 * USDT_UNIT, "u1")
    order = driver.core.reserve(limit(1, Side.BUY, PRICE, QTY, "b"), 5).order
    with pytest.raises(InvariantError, match="issued"):
        driver.core.apply_command(replace(order, price=PRICE - USDT_UNIT), 0, 0)


def test_a_replaying_core_has_no_snapshot():
    with pytest.raises(SnapshotNotReadyError, match="replaying"):
        UBSCore(MARKETS).snapshot()


def test_the_dedup_window_does_not_depend_on_the_replay_order():
    driver = Driver(UBSCoreConfig(order_window=2))
    driver.deposit(1, USDT, 100 * USDT_UNIT, "u1")
    driver.deposit(1, BTC, BTC_UNIT, "b1")
    for i, symbol in enumerate((BTC_USDT, ETH_BTC, BTC_USDT, ETH_BTC, BTC_USDT)):
        price = PRICE if symbol == BTC_USDT else 5_000_000
        quantity = QTY if symbol == BTC_USDT else 10**6
        driver.reserve(limit(1, Side.BUY, price, quantity, f"c{i}", symbol=symbol))
    driver.drain()
    for symbol in (BTC_USDT, ETH_BTC):
        while driver.matcher.expire(symbol, 0):
            pass
    driver.drain()
    expected = driver.core.snapshot()
    assert [o.client_order_id for o in expected.recent_orders] == ["c3", "c4"]
    for seed in range(10):
        assert (
            replay(driver.log, None, random.Random(seed), UBSCoreConfig(order_window=2)).snapshot()
            == expected
        )


def _tampered(driver: Driver, **changes: Any) -> UBSCore:
    return UBSCore.restore(replace(driver.core.snapshot(), **changes), MARKETS)


def test_restore_refuses_a_snapshot_that_contradicts_itself():
    driver = busy_driver()
    snapshot = driver.core.snapshot()
    with pytest.raises(InvariantError, match="frozen"):
        _tampered(driver, open_orders=snapshot.open_orders[1:])
    with pytest.raises(InvariantError, match="counter"):
        _tampered(driver, next_order_counter=1)
    moved = replace(snapshot.open_orders[0], reserved_asset=ETH)
    with pytest.raises(InvariantError, match="reserved"):
        _tampered(driver, open_orders=(moved, *snapshot.open_orders[1:]))
    with pytest.raises(InvariantError, match="deposits minus withdrawals"):
        _tampered(driver, supply=snapshot.supply[1:])


def test_open_orders_report_what_is_left_of_each_reservation():
    driver = busy_driver()
    for account in (1, 2, 3):
        for entry in driver.core.open_orders(AccountId(account)):
            assert isinstance(entry, OpenOrder)
            assert entry.remaining >= 0


def test_an_empty_log_replays_to_an_empty_core():
    core = replay(Log(), None, random.Random(0))
    assert core.snapshot().balances == ()
    assert not core.replaying


def _trade_and_done(driver: Driver) -> tuple[NewOrder, list[EngineEvent]]:
    driver.deposit(1, USDT, 10 * USDT_UNIT, "u1")
    driver.deposit(2, BTC, BTC_UNIT, "b2")
    buy = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b")).order
    driver.reserve(limit(2, Side.SELL, PRICE, QTY, "s"))
    driver.drain()
    driver.matcher.trade(BTC_USDT, 0, 0, 100)
    engine = [e for e in driver.log.records(ENGINE_TOPIC, 0) if isinstance(e, EngineEvent)]
    return buy, engine


def _engine_first(events: list[EngineEvent]) -> UBSCore:
    core = UBSCore(MARKETS)
    for offset, event in enumerate(events):
        core.apply_engine(event, 0, offset)
    return core


def test_while_replaying_an_event_after_the_order_was_done_stops_the_core():
    _, events = _trade_and_done(Driver())
    trade = next(e for e in events if isinstance(e.body, TradeExecuted))
    assert isinstance(events[-1].body, OrderDone)
    again = replace(trade, sequence=events[-1].sequence + 1)
    with pytest.raises(InvariantError, match="after it was done"):
        _engine_first([*events, again])


def test_while_replaying_events_that_disagree_with_their_command_stop_the_core():
    buy, events = _trade_and_done(Driver())
    core = _engine_first(events)
    with pytest.raises(InvariantError, match="its command says"):
        core.apply_command(replace(buy, account_id=AccountId(3)), 0, 0)


def test_while_replaying_a_command_with_an_id_of_another_shard_stops_the_core():
    core = UBSCore(MARKETS, UBSCoreConfig(shard_index=1, shard_count=2))
    order = NewOrder(
        BTC_USDT,
        OrderId(4),
        AccountId(3),
        ClientOrderId("c"),
        Side.SELL,
        OrderType.LIMIT,
        TimeInForce.GTC,
        PRICE,
        QTY,
        0,
        False,
        SelfTradePrevention.NONE,
        1,
    )
    with pytest.raises(InvariantError, match="another shard"):
        core.apply_command(order, 0, 0)
    core.apply_command(replace(order, account_id=AccountId(2)), 0, 1)  # another shard's: skipped
    assert core.next_offset(ORDERS_TOPIC, 0) == 2


def test_while_replaying_a_malformed_funding_event_stops_the_core():
    core = UBSCore(MARKETS)
    event = LedgerEvent(AccountId(1), USDT, LedgerEntryKind.TRADE, 5, "r", 1)
    with pytest.raises(InvariantError, match="malformed"):
        core.apply_ledger(event, 0, 0)


def test_a_funding_event_confirmed_with_other_content_stops_the_core():
    driver = Driver()
    funding = driver.core.deposit(AccountId(1), USDT, 5, "r", 1)
    with pytest.raises(InvariantError, match="issued"):
        driver.core.apply_ledger(replace(funding.event, amount=6), 1, 0)


@pytest.mark.parametrize(
    "changes",
    [
        {"shard_count": 0},
        {"shard_index": 2, "shard_count": 2},
        {"order_window": 0},
        {"funding_window": 2**21},
    ],
)
def test_an_impossible_configuration_is_refused(changes: dict[str, int]):
    with pytest.raises(ValueError, match="must be"):
        UBSCoreConfig(**changes)


def test_each_shard_rebuilds_its_own_accounts_from_the_shared_log():
    configs = [UBSCoreConfig(shard_index=i, shard_count=2) for i in range(2)]
    shards = [Driver(config) for config in configs]
    shards[1].log, shards[1].matcher = shards[0].log, shards[0].matcher
    for account in (1, 2, 3, 4):
        shard = shards[account % 2]
        shard.deposit(account, USDT, 100 * USDT_UNIT, f"u{account}")
        shard.deposit(account, BTC, BTC_UNIT, f"b{account}")
        side = Side.BUY if account <= 2 else Side.SELL
        shard.reserve(limit(account, side, PRICE, QTY, f"o{account}"))
    for symbol in (BTC_USDT,):
        shards[0].matcher.match(symbol, 100)
    for shard in shards:
        shard.drain()
    for config, shard in zip(configs, shards, strict=True):
        expected = shard.core.snapshot()
        rebuilt = replay(shard.log, None, random.Random(config.shard_index), config).snapshot()
        # A replay reads the other shard's records too, so it ends further in ordermesh.orders.
        assert replace(rebuilt, offsets=expected.offsets) == expected
        assert {b.account_id for b in rebuilt.balances} <= {0, *range(config.shard_index, 5, 2)}
