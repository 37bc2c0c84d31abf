"""A small exchange for settlement's tests: commands through the real matcher core.

`Exchange` numbers order ids, stamps times, runs every command through
`matcher.core.MatchingEngine` (so the engine events carry real sequences and hash chains),
and keeps the three logs as they would be on the bus: each record with its topic role,
partition, offset, key and value. `random_session` drives it with a seeded random mix of
every order type and option, deposits, withdrawals and cancels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from matcher.core import MatchingEngine
from ordermesh import codec
from ordermesh.events import CancelOrder, EngineEvent, LedgerEvent, NewOrder
from ordermesh.markets import MarketTable, load_markets
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)
from settlement.core import LogItem, Source

MARKETS: MarketTable = load_markets()
T0 = 1_700_000_040_000_000_000
"""A minute-aligned Unix time in ns (2023-11-14 22:14 UTC)."""
SECOND = 1_000_000_000
BTC_USDT, ETH_USDT, ETH_BTC = Symbol("BTC-USDT"), Symbol("ETH-USDT"), Symbol("ETH-BTC")
BUY, SELL = Side.BUY, Side.SELL


def atoms(value: str, asset: str) -> int:
    """Atoms of a decimal amount of `asset`."""
    return int(Decimal(value).scaleb(MARKETS.assets[Asset(asset)].scale))


@dataclass(frozen=True)
class LogRecord:
    """One record as it sits in a topic partition."""

    source: Source
    partition: int
    offset: int
    key: bytes
    value: bytes
    decoded: NewOrder | CancelOrder | EngineEvent | LedgerEvent

    def item(self) -> LogItem:
        return LogItem(self.source, self.partition, self.offset, self.decoded)


@dataclass
class Exchange:
    """Runs commands through the matcher core and keeps the three logs."""

    partitions: int = 2
    markets: MarketTable = MARKETS
    clock: int = T0
    step_ns: int = SECOND
    records: list[LogRecord] = field(default_factory=list)
    next_order_id: int = 1
    _offsets: dict[tuple[Source, int], int] = field(default_factory=dict)
    _engine: MatchingEngine | None = None

    def __post_init__(self) -> None:
        self._engine = MatchingEngine(self.markets.markets.values())

    def partition_of(self, symbol: str) -> int:
        return list(self.markets.markets).index(Symbol(symbol)) % self.partitions

    def _append(self, source: Source, partition: int, key: bytes, value: bytes, decoded) -> int:
        offset = self._offsets.get((source, partition), 0)
        self._offsets[(source, partition)] = offset + 1
        self.records.append(LogRecord(source, partition, offset, key, value, decoded))
        return offset

    def _tick(self, at: int | None) -> int:
        if at is not None:
            self.clock = max(self.clock, at)
        else:
            self.clock += self.step_ns
        return self.clock

    def send(self, command: NewOrder | CancelOrder) -> list[EngineEvent]:
        """Log `command`, match it, log its events; return them."""
        partition = self.partition_of(command.symbol)
        key = command.symbol.encode()
        offset = self._append(Source.ORDERS, partition, key, codec.encode_command(command), command)
        assert self._engine is not None
        events = self._engine.apply(command, offset)
        for event in events:
            self._append(Source.ENGINE, partition, key, codec.encode_engine_event(event), event)
        return events

    def order(
        self,
        account: int,
        side: Side,
        price: int,
        quantity: int,
        *,
        symbol: str = BTC_USDT,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        budget: int = 0,
        post_only: bool = False,
        stp: SelfTradePrevention = SelfTradePrevention.NONE,
        client: str | None = None,
        order_id: int | None = None,
        at: int | None = None,
    ) -> tuple[int, list[EngineEvent]]:
        """Place an order; return its order_id and the events it caused."""
        if order_id is None:
            order_id = self.next_order_id
            self.next_order_id += 1
        command = NewOrder(
            symbol=Symbol(symbol),
            order_id=OrderId(order_id),
            account_id=AccountId(account),
            client_order_id=ClientOrderId(client or f"c{order_id}"),
            side=side,
            order_type=order_type,
            time_in_force=tif,
            price=price,
            quantity=quantity,
            quote_budget=budget,
            post_only=post_only,
            self_trade_prevention=stp,
            timestamp_ns=self._tick(at),
        )
        return order_id, self.send(command)

    def cancel(
        self, account: int, order_id: int, *, symbol: str = BTC_USDT, at: int | None = None
    ) -> list[EngineEvent]:
        """Cancel by order_id."""
        return self.send(
            CancelOrder(
                symbol=Symbol(symbol),
                account_id=AccountId(account),
                order_id=OrderId(order_id),
                client_order_id=ClientOrderId(""),
                timestamp_ns=self._tick(at),
            )
        )

    def fund(
        self, account: int, asset: str, amount: int, reference: str, *, withdraw: bool = False
    ) -> LedgerEvent:
        """Log a deposit (or a withdrawal)."""
        kind = LedgerEntryKind.WITHDRAWAL if withdraw else LedgerEntryKind.DEPOSIT
        event = LedgerEvent(
            AccountId(account), Asset(asset), kind, amount, reference, self._tick(None)
        )
        self._append(
            Source.LEDGER,
            account % self.partitions,
            str(account).encode(),
            codec.encode_ledger_event(event),
            event,
        )
        return event

    def items(self) -> list[LogItem]:
        """Every record as the core's LogItem, in the order they were logged."""
        return [record.item() for record in self.records]

    def engine_events(self) -> list[EngineEvent]:
        return [r.decoded for r in self.records if isinstance(r.decoded, EngineEvent)]


_MIDS = {BTC_USDT: ("30000", "0.01"), ETH_USDT: ("2000", "0.01"), ETH_BTC: ("0.06", "0.00001")}
_LOTS = {BTC_USDT: "0.001", ETH_USDT: "0.01", ETH_BTC: "0.01"}


def random_session(seed: int, commands: int, *, exchange: Exchange | None = None) -> Exchange:
    """Deposits, then `commands` random orders and cancels over the three markets."""
    rng = random.Random(seed)
    exchange = exchange or Exchange()
    accounts = [1, 2, 3, 4]
    for account in accounts:
        for asset, amount in (("USDT", "10000000"), ("BTC", "1000"), ("ETH", "10000")):
            exchange.fund(account, asset, atoms(amount, asset), f"seed-{seed}-{account}-{asset}")
    live: list[tuple[int, int, Symbol]] = []
    for n in range(commands):
        symbol = rng.choice(list(_MIDS))
        market = exchange.markets.markets[symbol]
        mid, tick = (atoms(v, market.quote.code) for v in _MIDS[symbol])
        lot = atoms(_LOTS[symbol], market.base.code)
        account = rng.choice(accounts)
        roll = rng.random()
        if roll < 0.15 and live:
            owner, order_id, where = live.pop(rng.randrange(len(live)))
            exchange.cancel(owner, order_id, symbol=where)
        elif roll < 0.25:
            side = rng.choice((BUY, SELL))
            if side is BUY and rng.random() < 0.5:
                budget = mid * lot * rng.randint(1, 6) // 10**market.base.scale
                exchange.order(account, BUY, 0, 0, symbol=symbol, order_type=OrderType.MARKET,
                               tif=TimeInForce.IOC, budget=budget)  # fmt: skip
            else:
                exchange.order(account, side, 0, lot * rng.randint(1, 6), symbol=symbol,
                               order_type=OrderType.MARKET, tif=TimeInForce.IOC)  # fmt: skip
        elif roll < 0.3:
            exchange.fund(account, market.quote.code, mid, f"w-{seed}-{n}", withdraw=True)
        else:
            side = rng.choice((BUY, SELL))
            price = mid + tick * rng.randint(-4, 4)
            tif = rng.choice((TimeInForce.GTC,) * 6 + (TimeInForce.IOC, TimeInForce.FOK))
            stp = rng.choice(list(SelfTradePrevention))
            order_id, _ = exchange.order(
                account, side, price, lot * rng.randint(1, 5), symbol=symbol, tif=tif,
                post_only=tif is TimeInForce.GTC and rng.random() < 0.1, stp=stp,
            )  # fmt: skip
            if tif is TimeInForce.GTC:
                live.append((account, order_id, symbol))
    return exchange
