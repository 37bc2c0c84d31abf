"""`python -m ubscore` and `python -m matcher` as real processes on real Kafka, each SIGKILLed in
the middle of a stream of a few thousand orders and restarted.

Clients keep sending through both outages, resending the same request while ubscore answers
UNAVAILABLE (the contract: safe to retry with the same client_order_id). Once the mesh is
quiet, the log is the judge:
(a) every acked order was logged once, with the order_id the client heard, and has exactly
    one OrderDone or still rests on the matcher's book;
(b) per symbol the engine events are numbered 1..n and their hash chain verifies end to end;
    trade ids are unique;
(c) the engine topic is byte for byte what a fresh MatchingEngine makes of the orders topic;
(d) ubscore serves, for every account and the fee account, what a UBSCore rebuilt from the
    three topics from scratch holds, and every asset is conserved.
The whole run is bounded: it fails, saying where it was, if it takes over BUDGET_SECONDS.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
import pytest

from ordermesh.bus.kafka import KafkaBus
from ordermesh.events import EngineEvent, NewOrder, OrderDone, TradeExecuted
from ordermesh.markets import DEFAULT_MARKETS_PATH
from ordermesh.model import FEE_ACCOUNT, AccountId
from ordermesh.v1 import common_pb2, ubscore_pb2, ubscore_pb2_grpc
from ordermesh.v1 import matcher_pb2 as pb
from tests.integration.matcher.conftest import kafka_bus
from tests.integration.matcher.harness import (
    PARTITIONS,
    Produced,
    check_exact,
    matcher_stub,
    read_engine,
    straight_run,
    wait_processed,
)
from tests.integration.matcher.test_process import MatcherProcess
from tests.integration.mesh.harness import (
    decoded,
    group_of,
    held_by,
    orders_logged,
    replayed,
    served,
    totals,
    unused_port,
)
from tests.integration.ubscore.harness import MARKETS, eventually, ledger, supply
from tests.integration.ubscore.test_process import CHANNEL_OPTIONS, UBSCoreProcess, until_serving
from tests.servers.common import tail
from ubscore.core import UBSCore
from ubscore.lifecycle import LogTopics

if TYPE_CHECKING:
    from tests.integration.ubscore.harness import Stub

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T = TypeVar("T")

SEED = 2024
RESERVES = 3_000
CLIENTS = 8
ACCOUNTS = tuple(range(1, 11))
KILL_MATCHER_AT = RESERVES // 4
KILL_UBSCORE_AT = RESERVES * 11 // 20
BUDGET_SECONDS = 90.0
CALL_SECONDS = 10.0
RETRY_SECONDS = 0.05
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ANSWERS_TO_A_CANCEL = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})
FUNDS = {"USDT": 10_000 * 10**6, "BTC": 100 * 10**8, "ETH": 1_000 * 10**8}

# -- the stream --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Where one symbol's orders are priced: a few levels either side of a mid, so many cross."""

    symbol: str
    mid: int
    step: int
    lot: int
    """Base atoms; one lot is above the minimum notional at the lowest level."""


GRIDS = (
    Grid("BTC-USDT", 100 * 10**6, 10**6 // 2, 2 * 10**6),  # 98.5..101.5 USDT, 0.02 BTC lots
    Grid("ETH-USDT", 10 * 10**6, 10**6 // 20, 2 * 10**7),  # 9.85..10.15 USDT, 0.2 ETH lots
    Grid("ETH-BTC", 5 * 10**6, 25_000, 10**6),  # 0.04925..0.05075 BTC, 0.01 ETH lots
)

Request = (
    ubscore_pb2.UBSCoreReserveRequest
    | ubscore_pb2.UBSCoreCancelRequest
    | ubscore_pb2.UBSCoreDepositRequest
    | ubscore_pb2.UBSCoreWithdrawRequest
)


PREVENTIONS = (common_pb2.SELF_TRADE_PREVENTION_NONE,) * 17 + (
    common_pb2.SELF_TRADE_PREVENTION_EXPIRE_TAKER,
    common_pb2.SELF_TRADE_PREVENTION_EXPIRE_MAKER,
    common_pb2.SELF_TRADE_PREVENTION_EXPIRE_BOTH,
)
IOC, FOK = common_pb2.TIME_IN_FORCE_IOC, common_pb2.TIME_IN_FORCE_FOK


def order(rng: random.Random, account: int, client_order_id: str) -> Request:
    """A LIMIT (GTC, IOC, FOK, some post-only) or a MARKET order on one of the grids."""
    grid = rng.choice(GRIDS)
    buy = rng.random() < 0.5
    quantity = rng.randint(1, 4) * grid.lot
    request = ubscore_pb2.UBSCoreReserveRequest(
        account_id=account,
        symbol=grid.symbol,
        side=common_pb2.SIDE_BUY if buy else common_pb2.SIDE_SELL,
        client_order_id=client_order_id,
        self_trade_prevention=rng.choice(PREVENTIONS),
    )
    if rng.random() < 0.12:
        request.order_type = common_pb2.ORDER_TYPE_MARKET
        request.time_in_force = rng.choice((IOC, IOC, IOC, FOK))
        if buy:  # by quote budget: by quantity would freeze all the account's quote
            request.quote_quantity = MARKETS.market(grid.symbol).notional(grid.mid, quantity)
        else:
            request.quantity = quantity
        return request
    # Buyers bid up to two steps above the mid, sellers ask down to two below: many cross.
    level = rng.randint(-3, 2) if buy else rng.randint(-2, 3)
    request.order_type = common_pb2.ORDER_TYPE_LIMIT
    request.price = grid.mid + level * grid.step
    request.quantity = quantity
    draw = rng.random()
    request.time_in_force = (
        common_pb2.TIME_IN_FORCE_GTC if draw < 0.8 else IOC if draw < 0.92 else FOK
    )
    request.post_only = draw < 0.06
    return request


def stream(seed: int, reserves: int) -> list[Request]:
    """`reserves` orders from ACCOUNTS, with cancels of their own recent orders, deposits and
    withdrawals."""
    rng = random.Random(seed)
    placed: dict[int, list[str]] = defaultdict(list)
    out: list[Request] = []
    count = 0
    while count < reserves:
        account = rng.choice(ACCOUNTS)
        draw = rng.random()
        if draw < 0.07 and placed[account]:
            target = rng.choice(placed[account][-20:])
            out.append(ubscore_pb2.UBSCoreCancelRequest(account_id=account, client_order_id=target))
        elif draw < 0.08:
            out.append(
                ubscore_pb2.UBSCoreDepositRequest(
                    account_id=account, asset="USDT", amount=10**6, reference_id=f"in-{len(out)}"
                )
            )
        elif draw < 0.085:
            out.append(
                ubscore_pb2.UBSCoreWithdrawRequest(
                    account_id=account, asset="BTC", amount=10**5, reference_id=f"out-{len(out)}"
                )
            )
        else:
            client_order_id = f"o{len(out)}"
            out.append(order(rng, account, client_order_id))
            placed[account].append(client_order_id)
            count += 1
    return out


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Clients sending a stream through ubscore, resending whatever met an outage."""

    stub: Stub
    acked: dict[tuple[int, str], int] = field(default_factory=dict)
    """(account, client_order_id) -> the order_id the ack named."""
    retries: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    """Cancel outcomes: acked, or the status code that answered."""

    async def run(self, requests: Sequence[Request], clients: int) -> None:
        """Send every request, `clients` at a time, each until it has an answer."""
        pending = iter(requests)

        async def client() -> None:
            for request in pending:
                await self.send(request)

        await asyncio.gather(*(client() for _ in range(clients)))

    async def send(self, request: Request) -> None:
        stub = self.stub
        if isinstance(request, ubscore_pb2.UBSCoreReserveRequest):
            answer = await self.answered(lambda: stub.Reserve(request, timeout=CALL_SECONDS))
            key = (request.account_id, request.client_order_id)
            first = self.acked.setdefault(key, answer.order_id)
            assert first == answer.order_id, f"{key} acked as {first}, then as {answer.order_id}"
        elif isinstance(request, ubscore_pb2.UBSCoreCancelRequest):
            try:
                await self.answered(lambda: stub.Cancel(request, timeout=CALL_SECONDS))
            except grpc.aio.AioRpcError as e:
                if e.code() not in ANSWERS_TO_A_CANCEL:
                    raise
                self.cancels[e.code().name] += 1
            else:
                self.cancels["acked"] += 1
        elif isinstance(request, ubscore_pb2.UBSCoreDepositRequest):
            await self.answered(lambda: stub.Deposit(request, timeout=CALL_SECONDS))
        else:
            await self.answered(lambda: stub.Withdraw(request, timeout=CALL_SECONDS))

    async def answered(self, call: Callable[[], Awaitable[T]]) -> T:
        """The call's answer; the same request again while ubscore cannot take it."""
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRIED:
                    raise
                self.retries += 1
            await asyncio.sleep(RETRY_SECONDS)  # back-off between resends of one request

    async def reached(self, count: int) -> None:
        """Wait until `count` orders were acked."""

        async def acks() -> int:
            return len(self.acked)

        await eventually(acks, lambda n: n >= count, what=f"{count} orders acked", seconds=60)


# -- the test ----------------------------------------------------------------------------------


@dataclass
class Processes:
    """The two processes, a client channel to ubscore, a bus to read the log with."""

    ubscore: UBSCoreProcess
    matcher: MatcherProcess
    channel: grpc.aio.Channel
    bus: KafkaBus
    topics: LogTopics
    group: str
    phase: str = "starting"

    @property
    def stub(self) -> Stub:
        return ubscore_pb2_grpc.UBSCoreStub(self.channel)

    def logs(self) -> str:
        return (
            f"ubscore's log:\n{tail(self.ubscore.log, 30)}\n"
            f"matcher's log:\n{tail(self.matcher.log, 30)}"
        )


async def test_sigkill_of_each_service_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, kafka_cleanup: None, prefix: str, tmp_path: Path
) -> None:
    port, matcher_port = unused_port(), unused_port()
    ubscore = UBSCoreProcess(kafka_bootstrap, prefix, port, tmp_path / "ubscore.log")
    ubscore.command += ["--partitions", str(PARTITIONS), "--snapshot-every", "1000"]
    matcher = MatcherProcess(
        kafka_bootstrap, prefix, DEFAULT_MARKETS_PATH, tmp_path / "matcher.log",
        "--snapshot-every", "100", "--port", str(matcher_port),
    )  # fmt: skip
    matcher.port = matcher_port  # the last --port wins
    mesh = Processes(
        ubscore,
        matcher,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS),
        kafka_bus(kafka_bootstrap),
        LogTopics.with_prefix(prefix),
        group_of(prefix),
    )
    budget = asyncio.timeout(BUDGET_SECONDS)
    try:
        async with budget:
            await run_and_check(mesh)
    except TimeoutError:
        if not budget.expired():
            raise
        pytest.fail(f"not done within {BUDGET_SECONDS} s, while {mesh.phase}\n{mesh.logs()}")
    finally:
        await mesh.channel.close()
        ubscore.stop_if_running()
        matcher.stop_if_running()
        await mesh.bus.close()


async def run_and_check(mesh: Processes) -> None:
    mesh.ubscore.start()
    await until_serving(mesh.ubscore, mesh.channel)
    mesh.matcher.start()
    await mesh.matcher.serving()
    mesh.phase = "funding the accounts"
    traffic = Traffic(mesh.stub)
    for account in ACCOUNTS:
        for asset, amount in FUNDS.items():
            await traffic.send(
                ubscore_pb2.UBSCoreDepositRequest(
                    account_id=account,
                    asset=asset,
                    amount=amount,
                    reference_id=f"fund-{account}-{asset}",
                )
            )

    mesh.phase = "streaming orders through two SIGKILLs"
    sending = asyncio.create_task(traffic.run(stream(SEED, RESERVES), CLIENTS))
    try:
        await kill_and_restart_both(mesh, traffic)
        await sending
    finally:
        sending.cancel()
    assert len(traffic.acked) == RESERVES
    assert traffic.retries > 0, "no client met the ubscore outage: it was not mid-stream"
    assert traffic.cancels["acked"] > 0

    mesh.phase = "waiting for the matcher to commit every logged command"
    await mesh.matcher.serving()
    produced = await orders_logged(mesh.bus, mesh.topics)
    await wait_processed(mesh.bus, mesh.group, mesh.topics.orders, produced, 30)
    mesh.phase = "checking the engine topic"
    published = await read_engine(mesh.bus, mesh.topics.engine)
    check_exact(published, straight_run(produced, MARKETS))  # (b) and (c)
    events = decoded(published)
    check_trade_ids(events)
    mesh.phase = "checking every acked order's outcome"
    rebuilt = await replayed(mesh.bus, mesh.topics)
    await check_outcomes(mesh, traffic, produced, events, rebuilt)  # (a)
    mesh.phase = "waiting for ubscore's balances to equal a replay from scratch"
    await check_balances(mesh, rebuilt)  # (d)


async def kill_and_restart_both(mesh: Processes, traffic: Traffic) -> None:
    """SIGKILL the matcher after a quarter of the orders, ubscore after a half; restart each."""
    await traffic.reached(KILL_MATCHER_AT)
    mesh.matcher.signal(signal.SIGKILL)
    assert await mesh.matcher.exit_status() == -signal.SIGKILL
    mesh.matcher.start()
    await traffic.reached(KILL_UBSCORE_AT)
    mesh.ubscore.signal(signal.SIGKILL)
    assert await mesh.ubscore.exit_status() == -signal.SIGKILL
    mesh.ubscore.start()
    await until_serving(mesh.ubscore, mesh.channel)


def check_trade_ids(events: dict[str, list[EngineEvent]]) -> None:
    for symbol, stream_of in events.items():
        ids = [e.body.trade_id for e in stream_of if isinstance(e.body, TradeExecuted)]
        assert len(ids) == len(set(ids)), f"{symbol}: a trade id used twice"


async def check_outcomes(
    mesh: Processes,
    traffic: Traffic,
    produced: Produced,
    events: dict[str, list[EngineEvent]],
    rebuilt: UBSCore,
) -> None:
    """(a): each acked order logged once, done once or resting, nothing else resting."""
    logged = [command for command, _ in produced if isinstance(command, NewOrder)]
    copies = Counter((o.account_id, o.client_order_id) for o in logged)
    doubled = [key for key, count in copies.items() if count > 1]
    assert not doubled, f"orders logged more than once: {doubled[:10]}"
    assert set(copies) == set(traffic.acked), (
        f"logged, never acked: {sorted(set(copies) - set(traffic.acked))[:10]}; "
        f"acked, never logged: {sorted(set(traffic.acked) - set(copies))[:10]}"
    )
    by_id = {o.order_id: o for o in logged}
    for o in logged:
        assert traffic.acked[(o.account_id, o.client_order_id)] == o.order_id
    dones = Counter(
        e.body.order_id for stream_of in events.values() for e in stream_of
        if isinstance(e.body, OrderDone)
    )  # fmt: skip
    twice = [order_id for order_id, count in dones.items() if count > 1]
    assert not twice, f"orders done more than once: {twice[:10]}"
    assert set(dones) <= set(by_id), "an OrderDone for an order never logged"
    resting = {order_id for order_id in by_id if order_id not in dones}
    async with matcher_stub(mesh.matcher.port) as stub:
        for order_id in sorted(resting):
            symbol = by_id[order_id].symbol
            reply = await stub.GetOrder(pb.MatcherGetOrderRequest(symbol=symbol, order_id=order_id))
            assert reply.order.order_id == order_id
            assert reply.order.remaining_quantity > 0
        booked = 0
        for grid in GRIDS:
            book = await stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol=grid.symbol))
            booked += sum(level.order_count for level in (*book.bids, *book.asks))
    assert booked == len(resting), f"{booked} orders on the books, {len(resting)} not done"
    frozen_for = {o.order.order_id for a in ACCOUNTS for o in rebuilt.open_orders(AccountId(a))}
    assert frozen_for == resting, "ubscore's open orders differ from the matcher's books"


async def check_balances(mesh: Processes, rebuilt: UBSCore) -> None:
    """(d): every account as the log says, and every asset conserved."""
    accounts = (FEE_ACCOUNT, *ACCOUNTS)
    wanted = {account: held_by(rebuilt, account) for account in accounts}
    await eventually(
        lambda: served(mesh.stub, accounts),
        lambda now: now == wanted,
        what="ubscore's balances equal to a replay of the log from scratch",
        seconds=30,
    )
    assert totals(wanted.values()) == supply(await ledger(mesh.bus, mesh.topics))
