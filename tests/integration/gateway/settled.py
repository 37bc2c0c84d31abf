"""After a flow: wait until every service has read the whole log, then hold the stores to it.

`check_settled` first waits (conditions with deadlines) until the matcher has committed every
logged command, and ubscore and settlement have applied every committed engine and ledger
record. Then it asserts, from the log, from ubscore and from PostgreSQL:

- every TradeExecuted of the engine topic is in `trades` exactly once, and `trades` holds
  nothing else;
- for every account (the fee account 0 included) and asset, available + frozen as ubscore
  reports it equals the account's balance in the PostgreSQL ledger (`account_balances`);
- per asset, Σ balances = Σ deposits - Σ withdrawals of the ledger topic, in ubscore and in
  PostgreSQL alike, and the ledger's double entry balances (`ledger_problems`).

Customer accounts are read through the gateway's GetBalances. The fee account has no API key
(the gateway refuses a key for account 0), so its balances come from ubscore's own
GetBalances, the call the gateway forwards.

Targets are "the offset after the last record" per partition, not the end offsets: on Kafka a
transaction's commit marker takes an offset that no consumer ever records as applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import grpc

from ordermesh.bus import topics
from ordermesh.bus.base import Record
from ordermesh.markets import DEFAULT_MARKETS_PATH, load_markets
from ordermesh.v1 import common_pb2, events_pb2, ubscore_pb2, ubscore_pb2_grpc
from settlement.queries import ledger_problems
from tests.integration.gateway.harness import ACCOUNTS, DEADLINE_SECONDS, Mesh, balances, eventually
from tests.integration.matcher.harness import committed_offsets
from tests.integration.ubscore.harness import read_all
from ubscore.lifecycle import LogTopics

FEE_ACCOUNT = 0
Holdings = dict[int, dict[str, int]]
"""{account: {asset: available + frozen in atoms}}, zero amounts left out."""


@dataclass(frozen=True)
class Settled:
    """What the checks covered: trades, accounts compared, and each asset's supply in atoms."""

    trades: int
    accounts: int
    supply: dict[str, int]


@dataclass(frozen=True)
class Log:
    """The committed engine events and ledger events, decoded."""

    engine: list[events_pb2.EngineEvent]
    ledger: list[events_pb2.LedgerEvent]


def next_offsets(records: Iterable[Record]) -> dict[int, int]:
    """Per partition, the offset after its last record."""
    found: dict[int, int] = {}
    for record in records:
        found[record.partition] = max(found.get(record.partition, 0), record.offset + 1)
    return found


def reached(found: Mapping[int, int], wanted: Mapping[int, int]) -> bool:
    return all(found.get(partition, 0) >= offset for partition, offset in wanted.items())


async def settle(mesh: Mesh) -> Log:
    """Wait until the matcher, ubscore and settlement have read all of the log; return it."""
    names = LogTopics.with_prefix(mesh.prefix)
    logged = next_offsets(await read_all(mesh.bus, names.orders))
    group = f"{mesh.prefix}matcher"
    await eventually(
        lambda: committed_offsets(mesh.bus, group, names.orders),
        lambda found: reached(found, logged),
        what=f"the matcher to commit the orders topic up to {logged}",
    )
    engine = await read_all(mesh.bus, names.engine)
    ledger = await read_all(mesh.bus, names.ledger)
    engine_ends, ledger_ends = next_offsets(engine), next_offsets(ledger)
    consumer = mesh.settlement.service.consumer

    def stored(topic: str) -> Callable[[], Awaitable[dict[int, int]]]:
        async def probe() -> dict[int, int]:
            return {p: offset for (t, p), offset in consumer.committed.items() if t == topic}

        return probe

    await eventually(
        stored(names.engine),
        lambda found: reached(found, engine_ends),
        what=f"settlement to commit the engine topic up to {engine_ends}",
    )
    await eventually(
        stored(names.ledger),
        lambda found: reached(found, ledger_ends),
        what=f"settlement to commit the ledger topic up to {ledger_ends}",
    )

    async def applied() -> dict[int, int]:
        core = mesh.ubscore.service.writer.core
        return {p: core.next_offset(topics.ENGINE, p) for p in engine_ends}

    await eventually(
        applied,
        lambda found: reached(found, engine_ends),
        what=f"ubscore to apply the engine topic up to {engine_ends}",
    )
    return Log(
        [events_pb2.EngineEvent.FromString(r.value) for r in engine],
        [events_pb2.LedgerEvent.FromString(r.value) for r in ledger],
    )


def trades_of(engine: Sequence[events_pb2.EngineEvent]) -> list[tuple[str, int]]:
    """(symbol, trade_id) of every TradeExecuted, in log order."""
    return [
        (e.symbol, e.trade_executed.trade_id)
        for e in engine
        if e.WhichOneof("event") == "trade_executed"
    ]


def supply_of(ledger: Sequence[events_pb2.LedgerEvent]) -> dict[str, int]:
    """Per asset: Σ deposits - Σ withdrawals, in atoms."""
    supply: Counter[str] = Counter()
    for event in ledger:
        if event.kind == common_pb2.LEDGER_ENTRY_KIND_DEPOSIT:
            supply[event.asset] += event.amount
        elif event.kind == common_pb2.LEDGER_ENTRY_KIND_WITHDRAWAL:
            supply[event.asset] -= event.amount
    return {asset: amount for asset, amount in supply.items() if amount}


def totals(holdings: Holdings) -> dict[str, int]:
    """Per asset, the sum over accounts."""
    summed: Counter[str] = Counter()
    for assets in holdings.values():
        summed.update(assets)
    return {asset: amount for asset, amount in summed.items() if amount}


def to_atoms(text: str, scale: int) -> int:
    value = Decimal(text).scaleb(scale)
    assert value == value.to_integral_value(), f"{text} has more than {scale} decimals"
    return int(value)


async def ubscore_holdings(mesh: Mesh, accounts: Iterable[int]) -> Holdings:
    """available + frozen per account and asset: the gateway's GetBalances for accounts with
    a key, ubscore's own GetBalances for the others (the fee account)."""
    scales = {
        str(code): spec.scale for code, spec in load_markets(DEFAULT_MARKETS_PATH).assets.items()
    }
    holdings: Holdings = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ubscore.service.port}") as channel:
        ubscore = ubscore_pb2_grpc.UBSCoreStub(channel)
        for account in sorted(accounts):
            if account in ACCOUNTS:
                shown = await balances(mesh, account)
                held = {
                    asset: to_atoms(available, scales[asset]) + to_atoms(frozen, scales[asset])
                    for asset, (available, frozen) in shown.items()
                }
            else:
                answer = await ubscore.GetBalances(
                    ubscore_pb2.UBSCoreGetBalancesRequest(account_id=account),
                    timeout=DEADLINE_SECONDS,
                )
                held = {b.asset: b.available + b.frozen for b in answer.balances}
            holdings[account] = {asset: amount for asset, amount in held.items() if amount}
    return holdings


async def check_settled(mesh: Mesh) -> Settled:
    """Wait for the mesh to settle, then assert trades, balances and supply (module doc)."""
    log = await settle(mesh)
    connection = await asyncpg.connect(mesh.dsn)
    try:
        stored = {
            (r["symbol"], r["trade_id"]): r["copies"]
            for r in await connection.fetch(
                "SELECT symbol, trade_id, count(*) AS copies FROM trades GROUP BY symbol, trade_id"
            )
        }
        ledger_rows = await connection.fetch(
            "SELECT account_id, asset, balance FROM account_balances WHERE balance <> 0"
        )
        problems = await ledger_problems(connection)
    finally:
        await connection.close()

    executed = trades_of(log.engine)
    assert len(set(executed)) == len(executed), "a trade_id twice in the engine topic"
    assert stored == dict.fromkeys(executed, 1), "trades in PostgreSQL != TradeExecuted"
    assert sum(stored.values()) == len(executed)

    in_postgres: Holdings = {}
    for row in ledger_rows:
        in_postgres.setdefault(row["account_id"], {})[row["asset"]] = int(row["balance"])
    accounts = {FEE_ACCOUNT, *mesh.handed_out, *in_postgres, *(e.account_id for e in log.ledger)}
    in_ubscore = await ubscore_holdings(mesh, accounts)
    in_ubscore = {account: held for account, held in in_ubscore.items() if held}
    assert in_ubscore == in_postgres, "ubscore's balances != the PostgreSQL ledger"

    supply = supply_of(log.ledger)
    assert totals(in_ubscore) == supply, "ubscore: Σ balances != deposits - withdrawals"
    assert totals(in_postgres) == supply, "PostgreSQL: Σ balances != deposits - withdrawals"
    assert problems == []
    return Settled(len(executed), len(accounts), supply)
