"""Test doubles around the ubscore core: a partitioned log, a simple matcher, and a driver.

The driver plays the adapter: it calls the core, appends what the core returns to the log,
and confirms it back with the record's offset, so the core is always quiescent. The
simulated matcher reads ordermesh.orders and writes ordermesh.engine, doing only what a
matcher may: it fills at the maker's price, never beyond an order's limit, quantity or
budget, and charges fees by the market's bps on what each side receives.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ordermesh import amounts
from ordermesh.events import (
    CancelOrder,
    CancelRejected,
    EngineEvent,
    EventBody,
    LedgerEvent,
    NewOrder,
    OrderAccepted,
    OrderDone,
    TradeExecuted,
)
from ordermesh.markets import Market, MarketTable, parse_markets
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from ubscore.core import (
    ENGINE_TOPIC,
    LEDGER_TOPIC,
    ORDERS_TOPIC,
    Funding,
    Reservation,
    ReserveRequest,
    UBSCore,
    UBSCoreConfig,
    UBSCoreSnapshot,
)

MARKETS_TOML = """
[[assets]]
code = "BTC"
scale = 8

[[assets]]
code = "ETH"
scale = 8

[[assets]]
code = "USDT"
scale = 6

[[symbols]]
name = "BTC-USDT"
base = "BTC"
quote = "USDT"
tick_size = "1"
lot_size = "0.001"
min_qty = "0.002"
min_notional = "1"
maker_fee_bps = 10
taker_fee_bps = 20

[[symbols]]
name = "ETH-BTC"
base = "ETH"
quote = "BTC"
tick_size = "0.0001"
lot_size = "0.01"
min_qty = "0.01"
min_notional = "0.0001"
maker_fee_bps = 5
taker_fee_bps = 25
"""

MARKETS: MarketTable = parse_markets(MARKETS_TOML, origin="tests")
BTC_USDT = Symbol("BTC-USDT")
ETH_BTC = Symbol("ETH-BTC")
BTC, ETH, USDT = Asset("BTC"), Asset("ETH"), Asset("USDT")
SYMBOLS = (BTC_USDT, ETH_BTC)
ASSETS = (BTC, ETH, USDT)

USDT_UNIT = 10**6
BTC_UNIT = 10**8
ETH_UNIT = 10**8


def limit(
    account: int,
    side: Side,
    price: int,
    quantity: int,
    client_order_id: str = "c1",
    *,
    symbol: Symbol = BTC_USDT,
    time_in_force: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
) -> ReserveRequest:
    """A LIMIT order request in atoms."""
    return ReserveRequest(
        account_id=AccountId(account),
        symbol=symbol,
        side=side,
        order_type=OrderType.LIMIT,
        time_in_force=time_in_force,
        price=price,
        quantity=quantity,
        quote_quantity=0,
        client_order_id=ClientOrderId(client_order_id),
        post_only=post_only,
        self_trade_prevention=SelfTradePrevention.NONE,
    )


def market(
    account: int,
    side: Side,
    *,
    quantity: int = 0,
    quote_quantity: int = 0,
    client_order_id: str = "m1",
    symbol: Symbol = BTC_USDT,
) -> ReserveRequest:
    """A MARKET order request in atoms (IOC, as a market order lives)."""
    return ReserveRequest(
        account_id=AccountId(account),
        symbol=symbol,
        side=side,
        order_type=OrderType.MARKET,
        time_in_force=TimeInForce.IOC,
        price=0,
        quantity=quantity,
        quote_quantity=quote_quantity,
        client_order_id=ClientOrderId(client_order_id),
        post_only=False,
        self_trade_prevention=SelfTradePrevention.NONE,
    )


def live_core(config: UBSCoreConfig | None = None) -> UBSCore:
    """A fresh core with nothing to replay."""
    core = UBSCore(MARKETS, config)
    core.finish_replay()
    return core


Record = NewOrder | CancelOrder | LedgerEvent | EngineEvent


class Log:
    """Topics of partitions of records; a record's offset is its index."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], list[Record]] = {}

    def append(self, topic: str, partition: int, record: Record) -> int:
        records = self.partitions.setdefault((topic, partition), [])
        records.append(record)
        return len(records) - 1

    def records(self, topic: str, partition: int) -> list[Record]:
        return self.partitions.get((topic, partition), [])


def symbol_partition(symbol: Symbol) -> int:
    """ordermesh.orders and ordermesh.engine are keyed by symbol: one partition each here."""
    return SYMBOLS.index(symbol)


def account_partition(account_id: int) -> int:
    """ordermesh.ledger is keyed by account: two partitions here."""
    return account_id % 2


def apply_record(core: UBSCore, topic: str, partition: int, offset: int, record: Record) -> None:
    """Feed one log record to the core through the entry point of its topic."""
    if topic == ORDERS_TOPIC:
        assert isinstance(record, NewOrder | CancelOrder)
        core.apply_command(record, partition, offset)
    elif topic == LEDGER_TOPIC:
        assert isinstance(record, LedgerEvent)
        core.apply_ledger(record, partition, offset)
    else:
        assert isinstance(record, EngineEvent)
        core.apply_engine(record, partition, offset)


@dataclass
class SimOrder:
    """The matcher's view of a resting order."""

    order: NewOrder
    arrival: int
    remaining: int | None
    """Base atoms left; None for a MARKET BUY by budget."""
    budget: int | None
    """Quote atoms left; MARKET BUY only."""
    filled: int = 0
    filled_quote: int = 0


@dataclass
class SimulatedMatcher:
    """Reads ordermesh.orders, writes ordermesh.engine; trades when told, always legally."""

    markets: MarketTable
    log: Log
    cursors: dict[Symbol, int] = field(default_factory=dict)
    books: dict[Symbol, dict[OrderId, SimOrder]] = field(default_factory=dict)
    sequences: Counter[Symbol] = field(default_factory=Counter)
    trades: int = 0
    arrivals: int = 0

    def _emit(self, symbol: Symbol, body: EventBody, input_offset: int = 0) -> None:
        self.sequences[symbol] += 1
        event = EngineEvent(symbol, self.sequences[symbol], input_offset, 0, b"", body)
        self.log.append(ENGINE_TOPIC, symbol_partition(symbol), event)

    def accept(self, symbol: Symbol) -> bool:
        """Take the next command of `symbol`; False if there is none."""
        commands = self.log.records(ORDERS_TOPIC, symbol_partition(symbol))
        offset = self.cursors.get(symbol, 0)
        if offset >= len(commands):
            return False
        self.cursors[symbol] = offset + 1
        command = commands[offset]
        book = self.books.setdefault(symbol, {})
        if isinstance(command, NewOrder):
            self._accept_new(book, command, offset)
        else:
            assert isinstance(command, CancelOrder)
            resting = book.get(command.order_id)
            if resting is None or resting.order.account_id != command.account_id:
                reject = CancelRejected(
                    command.order_id,
                    command.account_id,
                    command.client_order_id,
                    RejectReason.ORDER_ALREADY_DONE,
                )
                self._emit(symbol, reject, offset)
            else:
                self._done(symbol, resting, OrderStatus.CANCELED, offset)
        return True

    def _accept_new(self, book: dict[OrderId, SimOrder], order: NewOrder, offset: int) -> None:
        accepted = OrderAccepted(
            order.order_id,
            order.account_id,
            order.client_order_id,
            order.side,
            order.order_type,
            order.time_in_force,
            order.price,
            order.quantity,
            order.quote_budget,
        )
        self._emit(order.symbol, accepted, offset)
        self.arrivals += 1
        budget = order.quote_budget if order.quote_budget else None
        remaining = order.quantity if order.quantity else None
        book[order.order_id] = SimOrder(order, self.arrivals, remaining, budget)

    def _done(
        self, symbol: Symbol, resting: SimOrder, status: OrderStatus, offset: int = 0
    ) -> None:
        del self.books[symbol][resting.order.order_id]
        order = resting.order
        done = OrderDone(
            order.order_id,
            order.account_id,
            order.client_order_id,
            status,
            RejectReason.UNSPECIFIED,
            resting.filled,
            resting.remaining or 0,
            resting.filled_quote,
            order.side,
            order.price,
        )
        self._emit(symbol, done, offset)

    def open_orders(self, symbol: Symbol) -> list[SimOrder]:
        return sorted(self.books.get(symbol, {}).values(), key=lambda o: o.arrival)

    def expire(self, symbol: Symbol, pick: int) -> bool:
        """End one resting order (EXPIRED); False if the book is empty."""
        resting = self.open_orders(symbol)
        if not resting:
            return False
        self._done(symbol, resting[pick % len(resting)], OrderStatus.EXPIRED)
        return True

    def trade(self, symbol: Symbol, pick_buy: int, pick_sell: int, lots: int) -> bool:
        """Fill up to `lots` lots between a resting buy and sell; False if these may not trade."""
        book = self.open_orders(symbol)
        buys = [o for o in book if o.order.side is Side.BUY]
        sells = [o for o in book if o.order.side is Side.SELL]
        if not buys or not sells:
            return False
        return self._try(buys[pick_buy % len(buys)], sells[pick_sell % len(sells)], lots)

    def match(self, symbol: Symbol, lots: int, rounds: int = 4) -> int:
        """Take every command, trade crossing orders for a few rounds, expire MARKET orders."""
        while self.accept(symbol):
            pass
        done = 0
        for _ in range(rounds):
            book = self.open_orders(symbol)
            pairs = [
                (buy, sell)
                for buy in book
                if buy.order.side is Side.BUY
                for sell in book
                if sell.order.side is Side.SELL
            ]
            if not any(self._try(buy, sell, lots) for buy, sell in pairs):
                break
            done += 1
        for resting in self.open_orders(symbol):
            if resting.order.order_type is OrderType.MARKET:
                self._done(symbol, resting, OrderStatus.EXPIRED)
        return done

    def _try(self, buy: SimOrder, sell: SimOrder, lots: int) -> bool:
        limits = [o for o in (buy, sell) if o.order.order_type is OrderType.LIMIT]
        if not limits:
            return False
        maker = min(limits, key=lambda o: o.arrival)
        taker = sell if maker is buy else buy
        price = maker.order.price
        if (buy.order.order_type is OrderType.LIMIT and buy.order.price < price) or (
            sell.order.order_type is OrderType.LIMIT and sell.order.price > price
        ):
            return False
        spec = self.markets.market(buy.order.symbol)
        quantity = self._fill_quantity(spec, buy, sell, price, lots)
        if quantity <= 0:
            return False
        self._fill(spec, buy, sell, taker=taker, price=price, quantity=quantity)
        return True

    @staticmethod
    def _fill_quantity(spec: Market, buy: SimOrder, sell: SimOrder, price: int, lots: int) -> int:
        caps = [lots * spec.lot_size]
        for resting in (buy, sell):
            if resting.remaining is not None:
                caps.append(resting.remaining)
        if buy.budget is not None:
            caps.append(amounts.max_quantity_for(buy.budget, price, spec.base.scale))
        quantity = min(caps)
        return quantity - quantity % spec.lot_size

    def _fill(
        self,
        spec: Market,
        buy: SimOrder,
        sell: SimOrder,
        *,
        taker: SimOrder,
        price: int,
        quantity: int,
    ) -> None:
        symbol = spec.symbol
        maker = sell if taker is buy else buy
        quote_quantity = spec.notional(price, quantity)
        buyer_bps = spec.taker_fee_bps if taker is buy else spec.maker_fee_bps
        seller_bps = spec.taker_fee_bps if taker is sell else spec.maker_fee_bps
        buyer_fee = amounts.fee(quantity, buyer_bps)
        seller_fee = amounts.fee(quote_quantity, seller_bps)
        self.trades += 1
        trade = TradeExecuted(
            trade_id=TradeId(self.trades),
            maker_order_id=maker.order.order_id,
            taker_order_id=taker.order.order_id,
            maker_account_id=maker.order.account_id,
            taker_account_id=taker.order.account_id,
            taker_side=taker.order.side,
            price=price,
            quantity=quantity,
            quote_quantity=quote_quantity,
            maker_fee=buyer_fee if maker is buy else seller_fee,
            taker_fee=buyer_fee if taker is buy else seller_fee,
        )
        self._emit(symbol, trade)
        for resting in (buy, sell):
            resting.filled += quantity
            resting.filled_quote += quote_quantity
            if resting.remaining is not None:
                resting.remaining -= quantity
        if buy.budget is not None:
            buy.budget -= quote_quantity
        for resting in (buy, sell):
            if resting.remaining == 0:
                self._done(symbol, resting, OrderStatus.FILLED)


class Driver:
    """A live core wired to a log and a matcher, as the adapters would wire it."""

    def __init__(self, config: UBSCoreConfig | None = None) -> None:
        self.core = live_core(config)
        self.log = Log()
        self.matcher = SimulatedMatcher(MARKETS, self.log)
        self.engine_read: Counter[int] = Counter()
        self.deposited: Counter[Asset] = Counter()
        self.withdrawn: Counter[Asset] = Counter()
        self.snapshots: list[UBSCoreSnapshot] = []
        self.clock = 0

    def now(self) -> int:
        self.clock += 1
        return self.clock

    def reserve(self, request: ReserveRequest) -> Reservation:
        reservation = self.core.reserve(request, self.now())
        if not reservation.duplicate:
            self._log_command(reservation.order)
        return reservation

    def cancel(
        self, account: int, *, order_id: int = 0, client_order_id: str = "", symbol: str = ""
    ) -> CancelOrder:
        command = self.core.cancel(
            AccountId(account),
            Symbol(symbol),
            OrderId(order_id),
            ClientOrderId(client_order_id),
            self.now(),
        )
        self._log_command(command)
        return command

    def _log_command(self, command: NewOrder | CancelOrder) -> None:
        partition = symbol_partition(command.symbol)
        offset = self.log.append(ORDERS_TOPIC, partition, command)
        self.core.apply_command(command, partition, offset)

    def deposit(self, account: int, asset: Asset, amount: int, reference: str) -> Funding:
        funding = self.core.deposit(AccountId(account), asset, amount, reference, self.now())
        if not funding.duplicate:
            self.deposited[asset] += amount
            self._log_funding(funding.event)
        return funding

    def withdraw(self, account: int, asset: Asset, amount: int, reference: str) -> Funding:
        funding = self.core.withdraw(AccountId(account), asset, amount, reference, self.now())
        if not funding.duplicate:
            self.withdrawn[asset] += amount
            self._log_funding(funding.event)
        return funding

    def _log_funding(self, event: LedgerEvent) -> None:
        assert event.kind in (LedgerEntryKind.DEPOSIT, LedgerEntryKind.WITHDRAWAL)
        partition = account_partition(event.account_id)
        offset = self.log.append(LEDGER_TOPIC, partition, event)
        self.core.apply_ledger(event, partition, offset)

    def consume_engine(self, partition: int, count: int | None = None) -> int:
        """Apply up to `count` unread engine events of a partition (all if None)."""
        events = self.log.records(ENGINE_TOPIC, partition)
        start = self.engine_read[partition]
        stop = len(events) if count is None else min(len(events), start + count)
        for offset in range(start, stop):
            apply_record(self.core, ENGINE_TOPIC, partition, offset, events[offset])
        self.engine_read[partition] = stop
        return stop - start

    def drain(self) -> None:
        """Let the matcher take every command, then apply every engine event."""
        for symbol in SYMBOLS:
            while self.matcher.accept(symbol):
                pass
        for partition in range(len(SYMBOLS)):
            self.consume_engine(partition)

    def take_snapshot(self) -> UBSCoreSnapshot:
        snapshot = self.core.snapshot()
        self.snapshots.append(snapshot)
        return snapshot


def replay(
    log: Log,
    snapshot: UBSCoreSnapshot | None,
    rng: random.Random,
    config: UBSCoreConfig | None = None,
) -> UBSCore:
    """A core rebuilt from `snapshot` (or nothing) and the log after it, partitions interleaved
    at random but each in its own order; finished and live."""
    core = UBSCore.restore(snapshot, MARKETS) if snapshot is not None else UBSCore(MARKETS, config)
    queues = []
    for (topic, partition), records in sorted(log.partitions.items()):
        start = core.next_offset(topic, partition)
        queue = [
            (topic, partition, offset, records[offset]) for offset in range(start, len(records))
        ]
        if queue:
            queues.append(queue[::-1])
    while queues:
        queue = rng.choice(queues)
        apply_record(core, *queue.pop())
        if not queue:
            queues.remove(queue)
    core.finish_replay()
    return core
