"""UBSCore core throughput: reservations, trades and releases on one seeded stream.

The stream is what a busy balance authority sees: funded accounts placing orders on the
three markets of config/markets.toml (mostly LIMIT a few hundred ticks around the mid, some
MARKET BUY by budget and MARKET SELL, and about 2% client retries that dedup answers), and
the matcher's answer to them: a trade for each crossing buy/sell pair at the maker's price
with the market's fees, and an OrderDone for every order. Two shapes of the same requests:

- steady: requests in chunks of 1,000; the matcher's answer to a chunk is applied ten
  chunks later, so about 10,000 orders are open at any time, as in a running service;
- bulk: every request first (all 200,000 orders open at once), then every trade, then every
  release: the worst case for memory and for Python's GC.

Each repeat runs on a fresh core and times each kind of call on its own: `reserve` (the
figure the goal is set on), `apply_command` confirming each NewOrder (as the adapter does on
each produce ack), `apply_engine` of a TradeExecuted, and of an OrderDone. Best and median
over the repeats are reported, with the GC on (as a service runs; the headline) and off,
then one more steady pass times every call for latency percentiles. Every repeat must end on
the same state hash.

All of this runs twice, each time in a fresh process: on the interpreted source, and on the
mypyc build of the same source (scripts/build_native.py, into build/native, never
committed; built here first if missing or stale). Both must end on the same state hashes.

    .venv/bin/python bench/ubscore_bench.py [--orders N] [--accounts A] [--seed S]
        [--repeats R] [--no-compiled]

Prints a table and writes bench/results/ubscore.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (make bench): the repo root must be importable
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402 - needs the path above
    NATIVE_ENV,
    build_native,
    latency_summary,
    native_build,
    select_build,
    write_result,
)

BUILD = select_build()  # the compiled modules first on sys.path if asked: before any of ours
from ordermesh import amounts  # noqa: E402
from ordermesh.events import (  # noqa: E402
    EngineEvent,
    NewOrder,
    OrderDone,
    TradeExecuted,
)
from ordermesh.markets import Market, MarketTable, load_markets  # noqa: E402
from ordermesh.model import (  # noqa: E402
    AccountId,
    Asset,
    ClientOrderId,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from ubscore.core import ReserveRequest, UBSCore  # noqa: E402

GOAL_RESERVATIONS_PER_S = 300_000
MIDS = {"BTC-USDT": "60000", "ETH-USDT": "3000", "ETH-BTC": "0.05"}
SYMBOL_WEIGHTS = {"BTC-USDT": 5, "ETH-USDT": 3, "ETH-BTC": 2}
FUNDING = {"USDT": "100000000", "BTC": "10000", "ETH": "100000"}  # per account, whole units
SPREAD_TICKS = 300
CHUNK, LAG = 1_000, 10  # steady shape: chunk size, and how many chunks the answers trail
P_MARKET_BUY, P_MARKET_SELL, P_RETRY = 0.05, 0.04, 0.02


Events = list[tuple[EngineEvent, int, int]]
"""(event, partition, offset) in log order."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Requests, and the matcher's answer to the orders they placed."""

    requests: list[ReserveRequest]
    trades: Events
    dones: Events


@dataclass(frozen=True, slots=True)
class Stream:
    """Everything a repeat feeds the core, built once from the seed."""

    deposits: list[tuple[AccountId, Asset, int]]
    steady: list[Chunk]
    """The requests in chunks, each answered on its own."""
    bulk: Chunk
    """All the requests, answered as a whole."""


# -- the stream ----------------------------------------------------------------------------


def _request(rng: random.Random, markets: MarketTable, account: int, number: int) -> ReserveRequest:
    symbol = rng.choices(list(SYMBOL_WEIGHTS), weights=list(SYMBOL_WEIGHTS.values()))[0]
    market = markets.market(symbol)
    lots = rng.randint(10, 1_000)
    quantity = lots * market.lot_size
    roll = rng.random()
    kind, side, price, budget = OrderType.LIMIT, rng.choice((Side.BUY, Side.SELL)), 0, 0
    if roll < P_MARKET_BUY:
        kind, side, quantity = OrderType.MARKET, Side.BUY, 0
        budget = lots * market.tick_size * 1_000
    elif roll < P_MARKET_BUY + P_MARKET_SELL:
        kind, side = OrderType.MARKET, Side.SELL
    else:
        mid = market.parse_price(MIDS[symbol])
        price = mid + rng.randint(-SPREAD_TICKS, SPREAD_TICKS) * market.tick_size
    return ReserveRequest(
        account_id=AccountId(account),
        symbol=Symbol(symbol),
        side=side,
        order_type=kind,
        time_in_force=TimeInForce.GTC if kind is OrderType.LIMIT else TimeInForce.IOC,
        price=price,
        quantity=quantity,
        quote_quantity=budget,
        client_order_id=ClientOrderId(f"o{number}"),
        post_only=False,
        self_trade_prevention=SelfTradePrevention.NONE,
    )


def _requests(
    rng: random.Random, markets: MarketTable, orders: int, accounts: int
) -> list[ReserveRequest]:
    requests: list[ReserveRequest] = []
    for number in range(orders):
        if requests and rng.random() < P_RETRY:
            requests.append(requests[rng.randrange(max(0, len(requests) - 1_000), len(requests))])
        else:
            requests.append(_request(rng, markets, rng.randint(1, accounts), number))
    return requests


class _Matcher:
    """Pairs crossing orders into trades at the maker's price, then ends every order."""

    def __init__(self, markets: MarketTable) -> None:
        self.markets = markets
        self.partitions = {symbol: i for i, symbol in enumerate(markets.markets)}
        self.sequences = dict.fromkeys(markets.markets, 0)
        self.offsets = dict.fromkeys(markets.markets, 0)
        self.trade_ids = 0

    def event(self, symbol: Symbol, body: Any) -> tuple[EngineEvent, int, int]:
        self.sequences[symbol] += 1
        self.offsets[symbol] += 1
        event = EngineEvent(symbol, self.sequences[symbol], 0, 0, b"", body)
        return event, self.partitions[symbol], self.offsets[symbol]

    def trade(self, market: Market, buy: NewOrder, sell: NewOrder) -> TradeExecuted | None:
        maker, taker = (buy, sell) if buy.order_id < sell.order_id else (sell, buy)
        if maker.order_type is OrderType.MARKET:
            maker, taker = taker, maker
        if maker.order_type is OrderType.MARKET:
            return None
        price = maker.price
        if (buy.order_type is OrderType.LIMIT and buy.price < price) or (
            sell.order_type is OrderType.LIMIT and sell.price > price
        ):
            return None
        caps = [sell.quantity]
        if buy.quantity:
            caps.append(buy.quantity)
        if buy.quote_budget:
            affordable = amounts.max_quantity_for(buy.quote_budget, price, market.base.scale)
            caps.append(affordable - affordable % market.lot_size)
        quantity = min(caps)
        if quantity <= 0:
            return None
        value = market.notional(price, quantity)
        buyer_bps = market.taker_fee_bps if taker is buy else market.maker_fee_bps
        seller_bps = market.taker_fee_bps if taker is sell else market.maker_fee_bps
        fees = {
            buy.order_id: amounts.fee(quantity, buyer_bps),
            sell.order_id: amounts.fee(value, seller_bps),
        }
        self.trade_ids += 1
        return TradeExecuted(
            TradeId(self.trade_ids), maker.order_id, taker.order_id, maker.account_id,
            taker.account_id, taker.side, price, quantity, value, fees[maker.order_id],
            fees[taker.order_id],
        )  # fmt: skip

    def answer(self, orders: Sequence[NewOrder]) -> tuple[list[Any], list[Any]]:
        trades, dones = [], []
        waiting: dict[tuple[Symbol, Side], list[NewOrder]] = {}
        for order in orders:
            other = Side.SELL if order.side is Side.BUY else Side.BUY
            queue = waiting.get((order.symbol, other))
            if queue:
                counter = queue.pop()
                buy, sell = (order, counter) if order.side is Side.BUY else (counter, order)
                trade = self.trade(self.markets.market(order.symbol), buy, sell)
                if trade is not None:
                    trades.append(self.event(order.symbol, trade))
                    continue
                queue.append(counter)
            waiting.setdefault((order.symbol, order.side), []).append(order)
        for order in orders:
            done = OrderDone(order.order_id, order.account_id, order.client_order_id,
                             OrderStatus.EXPIRED, RejectReason.UNSPECIFIED, 0, 0, 0,
                             order.side, order.price)  # fmt: skip
            dones.append(self.event(order.symbol, done))
        return trades, dones


def build_stream(markets: MarketTable, orders: int, accounts: int, seed: int) -> Stream:
    """Requests from the seed; engine events from what a first core makes of them."""
    rng = random.Random(seed)
    deposits = [
        (AccountId(account), Asset(code), int(units) * amounts.pow10(markets.asset(code).scale))
        for account in range(1, accounts + 1)
        for code, units in FUNDING.items()
    ]
    requests = _requests(rng, markets, orders, accounts)
    core = _funded_core(markets, deposits)
    placed = [core.reserve(request, n) for n, request in enumerate(requests)]
    steady, matcher = [], _Matcher(markets)
    for start in range(0, len(requests), CHUNK):
        chunk = placed[start : start + CHUNK]
        trades, dones = matcher.answer([r.order for r in chunk if not r.duplicate])
        steady.append(Chunk(requests[start : start + CHUNK], trades, dones))
    # Within a symbol the matcher's sequence must arrive in order: in bulk, every trade is
    # numbered before every done.
    trades, dones = _Matcher(markets).answer([r.order for r in placed if not r.duplicate])
    return Stream(deposits, steady, Chunk(requests, trades, dones))


# -- the runs ------------------------------------------------------------------------------


def _funded_core(markets: MarketTable, deposits: list[tuple[AccountId, Asset, int]]) -> UBSCore:
    core = UBSCore(markets)
    core.finish_replay()
    for offset, (account, asset, amount) in enumerate(deposits):
        funding = core.deposit(account, asset, amount, f"seed-{offset}", 0)
        core.apply_ledger(funding.event, 0, offset)
    return core


class Run:
    """A fresh funded core, and the seconds and calls spent in each kind of call."""

    def __init__(self, markets: MarketTable, deposits: list[tuple[AccountId, Asset, int]]) -> None:
        self.core = _funded_core(markets, deposits)
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self.offset = 0

    def reserve(self, requests: list[ReserveRequest]) -> None:
        """Reserve a chunk of requests, then confirm the new orders as their acks arrive."""
        reserve, placed = self.core.reserve, list[NewOrder]()
        keep = placed.append
        start = time.perf_counter()
        for number, request in enumerate(requests, self.offset):
            reservation = reserve(request, number)
            if not reservation.duplicate:  # a retry is answered, not logged again
                keep(reservation.order)
        self._add("reserve", start, len(requests))
        apply_command = self.core.apply_command
        start = time.perf_counter()
        for offset, order in enumerate(placed, self.offset):
            apply_command(order, 0, offset)
        self._add("confirm", start, len(placed))
        self.offset += len(requests)

    def engine(self, phase: str, events: Events) -> None:
        """Apply engine events, timed as `phase`."""
        apply_engine = self.core.apply_engine
        start = time.perf_counter()
        for event, partition, offset in events:
            apply_engine(event, partition, offset)
        self._add(phase, start, len(events))

    def _add(self, phase: str, start: float, calls: int) -> None:
        self.seconds[phase] += time.perf_counter() - start
        self.calls[phase] += calls

    def finish(self) -> tuple[dict[str, tuple[float, int]], bytes]:
        """Check the final state; the time and calls of each phase, and the state hash."""
        self.core.finish_replay()  # the full consistency check: nothing frozen is unexplained
        phases = {phase: (self.seconds[phase], self.calls[phase]) for phase in PHASES}
        return phases, self.core.state_hash()


PHASES = ("reserve", "confirm", "trade", "release")


def run_steady(markets: MarketTable, stream: Stream) -> tuple[dict[str, tuple[float, int]], bytes]:
    """Chunks of requests, each answered LAG chunks later: a bounded set of open orders."""
    run = Run(markets, stream.deposits)
    gc.collect()
    for i, chunk in enumerate(stream.steady):
        run.reserve(chunk.requests)
        if i >= LAG:
            answered = stream.steady[i - LAG]
            run.engine("trade", answered.trades)
            run.engine("release", answered.dones)
    for answered in stream.steady[max(0, len(stream.steady) - LAG) :]:
        run.engine("trade", answered.trades)
        run.engine("release", answered.dones)
    return run.finish()


def run_bulk(markets: MarketTable, stream: Stream) -> tuple[dict[str, tuple[float, int]], bytes]:
    """Every request, then every trade, then every release."""
    run = Run(markets, stream.deposits)
    gc.collect()
    run.reserve(stream.bulk.requests)
    run.engine("trade", stream.bulk.trades)
    run.engine("release", stream.bulk.dones)
    return run.finish()


def latencies(markets: MarketTable, stream: Stream) -> dict[str, dict[str, float]]:
    """Per-call latency of reserve and of applying a trade, steady shape, GC on."""
    core = _funded_core(markets, stream.deposits)
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {"reserve": [], "trade": []}
    for i, chunk in enumerate(stream.steady):
        for number, request in enumerate(chunk.requests):
            start = clock()
            core.reserve(request, number)
            samples["reserve"].append(clock() - start)
        if i >= LAG:
            answered = stream.steady[i - LAG]
            for event, partition, offset in answered.trades:
                start = clock()
                core.apply_engine(event, partition, offset)
                samples["trade"].append(clock() - start)
            for event, partition, offset in answered.dones:
                core.apply_engine(event, partition, offset)
    return {kind: latency_summary(values) for kind, values in samples.items()}


def summarize(runs: list[dict[str, tuple[float, int]]]) -> dict[str, dict[str, int]]:
    """Per phase: count, best and median throughput (per second)."""
    summary = {}
    for phase in runs[0]:
        rates = [count / seconds for seconds, count in (run[phase] for run in runs)]
        summary[phase] = {
            "count": runs[0][phase][1],
            "best_per_s": round(max(rates)),
            "median_per_s": round(statistics.median(rates)),
        }
    return summary


Runner = Callable[[MarketTable, Stream], tuple[dict[str, tuple[float, int]], bytes]]


def _repeat(
    runner: Runner, markets: MarketTable, stream: Stream, repeats: int, hashes: dict[str, set[str]]
) -> dict[str, dict[str, int]]:
    runs = []
    for _ in range(repeats):
        phases, digest = runner(markets, stream)
        runs.append(phases)
        hashes.setdefault(runner.__name__, set()).add(digest.hex())
    return summarize(runs)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """This process's build: the stream, the repeats and the latency pass; its figures."""
    native = native_build() if BUILD == "compiled" else None
    markets = load_markets()
    stream = build_stream(markets, args.orders, args.accounts, args.seed)
    hashes: dict[str, set[str]] = {}
    figures = {
        "steady_gc_on": _repeat(run_steady, markets, stream, args.repeats, hashes),
        "bulk_gc_on": _repeat(run_bulk, markets, stream, max(1, args.repeats // 2), hashes),
    }
    gc.disable()
    try:
        figures["steady_gc_off"] = _repeat(run_steady, markets, stream, args.repeats, hashes)
    finally:
        gc.enable()
    if any(len(digests) != 1 for digests in hashes.values()):
        raise SystemExit("repeats ended on different state hashes: the core is not deterministic")
    placed = sum(len(chunk.dones) for chunk in stream.steady)
    return {
        "build": BUILD,
        **(
            {"mypy": native["mypy"], "compiled_modules": len(native["modules"])}
            if native is not None
            else {}
        ),
        **figures,
        "latency_steady_gc_on": latencies(markets, stream),
        "final_state_hash": {name: digests.pop() for name, digests in hashes.items()},
        "retries_deduplicated": args.orders - placed,
        "trades": {
            "steady": sum(len(c.trades) for c in stream.steady),
            "bulk": len(stream.bulk.trades),
        },
    }


def _child(build: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run `measure` for one build in a fresh interpreter; its figures."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [sys.executable, __file__, "--child", "--out", str(out), "--orders",
               str(args.orders), "--accounts", str(args.accounts), "--seed", str(args.seed),
               "--repeats", str(args.repeats)]  # fmt: skip
    env = {**os.environ, NATIVE_ENV: "1" if build == "compiled" else "0"}
    try:
        subprocess.run(command, env=env, check=True)  # noqa: S603 - this very script
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures
    finally:
        out.unlink(missing_ok=True)


def _print(build: str, figures: dict[str, Any]) -> None:
    print(f"== {build}")
    for label in ("steady_gc_on", "bulk_gc_on", "steady_gc_off"):
        print(f"{label}:")
        for phase, numbers in figures[label].items():
            print(
                f"  {phase:8s} {numbers['count']:>9,d} calls  best {numbers['best_per_s']:>9,.0f}/s"
                f"  median {numbers['median_per_s']:>9,.0f}/s"
            )
    for kind, summary in figures["latency_steady_gc_on"].items():
        print(f"latency {kind}: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.items()))


def orchestrate(args: argparse.Namespace) -> None:
    """Measure each build in its own process, compare them, write the JSON."""
    runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    runs["interpreted"] = _child("interpreted", args)
    _print("interpreted", runs["interpreted"])
    problem = "skipped (--no-compiled)" if args.no_compiled else build_native()
    if problem is None:
        runs["compiled"] = _child("compiled", args)
        _print("compiled (mypyc)", runs["compiled"])
    else:
        notes.append(f"compiled build: {problem}")
    shared = ("final_state_hash", "retries_deduplicated", "trades")
    if any(run[key] != runs["interpreted"][key] for run in runs.values() for key in shared):
        raise SystemExit("the builds ended on different state hashes: they do not agree")
    reservations = {
        build: run["steady_gc_on"]["reserve"]["best_per_s"] for build, run in runs.items()
    }
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "seed": args.seed,
        "orders": args.orders,
        "accounts": args.accounts,
        "repeats": args.repeats,
        "steady_chunk_and_lag": [CHUNK, LAG],
        **{key: runs["interpreted"][key] for key in shared},
        "goal_reservations_per_s": GOAL_RESERVATIONS_PER_S,
        "reservations_per_s": reservations,
        "runs": {
            build: {key: value for key, value in run.items() if key not in shared}
            for build, run in runs.items()
        },
        "notes": notes,
    }
    for build, best in reservations.items():
        print(
            f"reservations/s ({build}, steady, GC on, best): {best:,.0f}; "
            f"goal {GOAL_RESERVATIONS_PER_S:,d}"
        )
    for note in notes:
        print("note:", note)
    print(f"wrote {write_result('ubscore', result)}")


def main() -> int:
    """Run the benchmark, or one build's measurements when called as a --child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000, help="reserve requests")
    parser.add_argument("--accounts", type=int, default=10_000, help="funded accounts")
    parser.add_argument("--seed", type=int, default=20_261_121)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--no-compiled", action="store_true", help="skip the run on the mypyc build"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.out.write_text(json.dumps(measure(args)))
    else:
        orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
