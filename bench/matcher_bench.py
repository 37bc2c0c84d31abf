"""Matcher core vs lightmatchingengine: one seeded command stream through both.

The stream (default 1,000,000 commands) is what a busy book sees: limit orders resting off
the touch (exponentially distributed, mean --spread ticks), about a quarter cancels of live
orders, and some marketable flow (IOC limits through the touch, MARKET orders by quantity)
sized to sweep one to three levels. It uses only what both engines do, so both must trade
the same volume (checked). With the default spread the book holds about 800 orders on
about 230 levels, and the peer runs near the ~260,000 commands/s the issue quotes for it;
--spread 6 gives a thin book (about 100 orders), on which the peer is much faster.

Each engine runs in its own fresh process: --repeats timed passes over the whole stream
(the best is kept; wall and CPU time), then one pass from an empty book timing every
command (latency). Ours runs through `MatchingEngine.apply` and yields its full events
with the hash chain; the peer returns its own order and trade objects. Ours runs twice:
interpreted, and compiled by mypyc from the same source (scripts/build_native.py, into
build/native, never committed; built here first if missing or stale); both must end on the
same hash. --profile adds a cProfile of the interpreted run to the result (compiled
functions are invisible to cProfile).

    .venv/bin/python bench/matcher_bench.py [--commands N] [--seed S] [--spread T]
        [--repeats R] [--no-compiled] [--profile]

Prints a table and writes bench/results/matcher.json.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import json
import os
import pickle
import pstats
import random
import subprocess
import sys
import tempfile
import time
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

SYMBOL = "BTC-USDT"
NEW, CANCEL = 0, 1
GTC, IOC, MARKET = 0, 1, 2
SPREAD = 20  # mean distance of a resting order from the touch, in ticks (exponential)
P_CANCEL, P_TAKE = 0.25, 0.12  # shares of the stream; the rest are resting limit orders
BUY, SELL = 1, 2

Row = tuple[int, ...]
"""(NEW, order_id, account, side, kind, price, quantity) or (CANCEL, order_id, account)."""


# -- the stream ----------------------------------------------------------------------------


def generate(count: int, seed: int, spread: int) -> tuple[list[Row], dict[str, Any]]:
    """The stream, shaped by a shadow book so that cancels hit live orders."""
    from matcher.core import MatchingEngine  # noqa: PLC0415 - after the child's sys.path
    from ordermesh.model import Side  # noqa: PLC0415 - after the child's sys.path

    market = _market()
    shadow = MatchingEngine([market])
    book = shadow.book(market.symbol)
    rng = random.Random(seed)
    rows: list[Row] = []
    live: list[int] = []
    resting: list[int] = []
    next_id = 1
    for offset in range(count):
        draw = rng.random()
        row: Row | None = None
        if draw < P_CANCEL:
            row = _cancel_row(rng, live, book)
        elif draw < P_CANCEL + P_TAKE:
            row = _taking_row(rng, book, market.lot_size)
        if row is None:
            row = _resting_row(rng, book, market.tick_size, market.lot_size, spread)
        if row[0] == NEW:
            row = (NEW, next_id, *row[2:])
            next_id += 1
            if row[4] == GTC:
                live.append(row[1])
        rows.append(row)
        shadow.apply(_command(row, offset), offset)
        if offset % 1000 == 0:
            resting.append(len(book))
    shape = {
        "limit_gtc": sum(1 for r in rows if r[0] == NEW and r[4] == GTC),
        "limit_ioc": sum(1 for r in rows if r[0] == NEW and r[4] == IOC),
        "market": sum(1 for r in rows if r[0] == NEW and r[4] == MARKET),
        "cancels": sum(1 for r in rows if r[0] == CANCEL),
        "resting_orders_mean": round(sum(resting) / len(resting)),
        "resting_orders_end": len(book),
        "price_levels_end": len(book.depth(Side.BUY)) + len(book.depth(Side.SELL)),
    }
    return rows, shape


def _cancel_row(rng: random.Random, live: list[int], book: Any) -> Row | None:
    while live:
        index = rng.randrange(len(live))
        order_id = live[index]
        live[index] = live[-1]
        live.pop()
        if order_id in book:
            return (CANCEL, order_id, book.order(order_id).account_id)
    return None


def _taking_row(rng: random.Random, book: Any, lot: int) -> Row | None:
    from ordermesh.model import Side  # noqa: PLC0415 - after the child's sys.path

    side = BUY if rng.random() < 0.5 else SELL
    levels = book.depth(Side.SELL if side == BUY else Side.BUY, rng.randint(1, 3))
    if not levels:
        return None
    available = sum(level.quantity for level in levels)
    quantity = max(lot, available * rng.randint(60, 110) // 100 // lot * lot)
    account = rng.randint(1, 1000)
    if rng.random() < 0.3:
        return (NEW, 0, account, side, MARKET, 0, quantity)
    return (NEW, 0, account, side, IOC, levels[-1].price, quantity)


def _resting_row(rng: random.Random, book: Any, tick: int, lot: int, spread: int) -> Row:
    side = BUY if rng.random() < 0.5 else SELL
    bid, ask = book.best_bid(), book.best_ask()
    mid = 30_000 * 10**6 // tick * tick  # 30,000.00 USDT while the book is empty
    if bid is not None and ask is not None:
        mid = (bid + ask) // 2 // tick * tick
    elif bid is not None or ask is not None:
        mid = bid if bid is not None else ask
    away = 1 + min(int(rng.expovariate(1 / spread)), 20 * spread)
    if side == BUY:
        price = min(mid - away * tick, (ask or mid + tick) - tick)
    else:
        price = max(mid + away * tick, (bid or mid - tick) + tick)
    quantity = lot * (1 + min(int(rng.expovariate(1 / 8)), 200))
    return (NEW, 0, rng.randint(1, 1000), side, GTC, price, quantity)


def _market() -> Any:
    from ordermesh.markets import load_markets  # noqa: PLC0415 - after the child's sys.path

    return load_markets().market(SYMBOL)


def _command(row: Row, offset: int) -> Any:
    """Our command for a row."""
    from ordermesh.events import CancelOrder, NewOrder  # noqa: PLC0415 - see _market
    from ordermesh.model import (  # noqa: PLC0415 - see _market
        AccountId,
        ClientOrderId,
        OrderId,
        OrderType,
        SelfTradePrevention,
        Side,
        Symbol,
        TimeInForce,
    )

    timestamp = 1_700_000_000_000_000_000 + offset * 1_000
    if row[0] == CANCEL:
        return CancelOrder(
            Symbol(SYMBOL), AccountId(row[2]), OrderId(row[1]), ClientOrderId(""), timestamp
        )
    _, order_id, account, side, kind, price, quantity = row
    return NewOrder(
        symbol=Symbol(SYMBOL),
        order_id=OrderId(order_id),
        account_id=AccountId(account),
        client_order_id=ClientOrderId(f"c-{order_id}"),
        side=Side(side),
        order_type=OrderType.MARKET if kind == MARKET else OrderType.LIMIT,
        time_in_force=TimeInForce.IOC if kind == IOC else TimeInForce.GTC,
        price=price,
        quantity=quantity,
        # A MARKET BUY carries the quote ubscore froze for it: here twice the price's worth.
        quote_budget=quantity * 60_000 * 10**6 // 10**8 if kind == MARKET and side == BUY else 0,
        post_only=False,
        self_trade_prevention=SelfTradePrevention.NONE,
        timestamp_ns=timestamp,
    )


# -- the runs (each in its own process) ----------------------------------------------------


def run_ours(rows: list[Row], repeats: int, build: str, profile: bool) -> dict[str, Any]:
    """Throughput passes, then a latency pass, through our MatchingEngine."""
    from matcher.core import MatchingEngine, construct  # noqa: PLC0415 - after select_build
    from ordermesh.events import TradeExecuted  # noqa: PLC0415 - after the child's sys.path

    native = native_build() if build == "compiled" else None
    market = _market()
    commands = [_command(row, offset) for offset, row in enumerate(rows)]
    gc.collect()
    gc.freeze()  # the stream itself is not the engine's garbage to scan

    def throughput() -> tuple[int, int, int, bytes]:
        engine = MatchingEngine([market])
        apply = engine.apply
        events = 0
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for offset, command in enumerate(commands):
            events += len(apply(command, offset))
        wall, cpu = time.perf_counter_ns() - wall, time.process_time_ns() - cpu
        return wall, cpu, events, engine.book(market.symbol).last_hash

    passes = [throughput() for _ in range(repeats)]
    if len({final for *_, final in passes}) != 1:
        raise SystemExit("passes over the same stream ended on different hashes")
    _, _, events, final_hash = passes[0]

    engine = MatchingEngine([market])
    apply = engine.apply
    clock = time.perf_counter_ns
    samples: list[int] = []
    volume = trades = 0
    for offset, command in enumerate(commands):
        before = clock()
        out = apply(command, offset)
        samples.append(clock() - before)
        for event in out:
            if type(event.body) is TradeExecuted:
                trades += 1
                volume += event.body.quantity
    if engine.book(market.symbol).last_hash != final_hash:
        raise SystemExit("the latency pass ended on another hash: not deterministic")
    result = {
        "build": build,
        "event_construction": "layout twins" if construct.FAST else "constructors",
        **_figures(len(commands), passes, samples),
        "events": events,
        "events_per_command": round(events / len(commands), 3),
        "trades": trades,
        "volume_base_atoms": volume,
        "final_hash": final_hash.hex(),
    }
    if native is not None:
        result["mypy"] = native["mypy"]
        result["compiled_modules"] = len(native["modules"])
    if profile:
        result["profile"] = _profile(MatchingEngine([market]).apply, commands)
    return result


def _profile(apply: Any, commands: list[Any]) -> list[dict[str, Any]]:
    """CProfile of one pass: the functions with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.enable()
    for offset, command in enumerate(commands):
        apply(command, offset)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_, calls, own, total, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(path).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "own_s": round(own, 3),
                     "cumulative_s": round(total, 3)})  # fmt: skip
    rows.sort(key=lambda row: -row["own_s"])
    return rows[:20]


def run_peer(rows: list[Row], repeats: int) -> dict[str, Any]:
    """The same passes through lightmatchingengine (IOC and MARKET remainders: canceled)."""
    from lightmatchingengine.lightmatchingengine import (  # noqa: PLC0415 - optional extra
        LightMatchingEngine,
    )

    # Decoded up front, like our commands: (is new, order id, add_order args, cancel the rest).
    ops = [
        (True, row[1], (SYMBOL, row[5], row[6], row[3]), row[4] != GTC)
        if row[0] == NEW
        else (False, row[1], (), False)
        for row in rows
    ]
    gc.collect()
    gc.freeze()

    def throughput() -> tuple[int, int, int, bytes]:
        engine = LightMatchingEngine()
        add, cancel = engine.add_order, engine.cancel_order
        placed: dict[int, Any] = {}
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for is_new, order_id, args, rest in ops:
            if is_new:
                order, _ = add(*args)
                placed[order_id] = order
                if rest and order.leaves_qty > 0:
                    cancel(order_id, SYMBOL)
            else:
                order = placed.get(order_id)
                if order is not None and order.leaves_qty > 0:  # it asserts on filled orders
                    cancel(order_id, SYMBOL)
        return time.perf_counter_ns() - wall, time.process_time_ns() - cpu, 0, b""

    passes = [throughput() for _ in range(repeats)]
    samples, volume = _peer_latency(LightMatchingEngine(), ops)
    return {"build": "interpreted", **_figures(len(rows), passes, samples),
            "volume_base_atoms": volume}  # fmt: skip


def _peer_latency(engine: Any, ops: list[tuple[bool, int, tuple[Any, ...], bool]]) -> Any:
    """Per-command latency samples of the peer, and the volume it traded (outside the clock)."""
    add, cancel = engine.add_order, engine.cancel_order
    placed: dict[int, Any] = {}
    clock = time.perf_counter_ns
    samples: list[int] = []
    volume = 0
    for is_new, order_id, args, rest in ops:
        before = clock()
        fills = []
        if is_new:
            order, fills = add(*args)
            placed[order_id] = order
            if rest and order.leaves_qty > 0:
                cancel(order_id, SYMBOL)
        else:
            order = placed.get(order_id)
            if order is not None and order.leaves_qty > 0:
                cancel(order_id, SYMBOL)
        samples.append(clock() - before)
        if is_new:
            if order.order_id != order_id:
                raise SystemExit("the peer's order ids diverged from the stream's")
            volume += sum(fill.trade_qty for fill in fills if fill.order_id == order_id)
    return samples, volume


def _figures(
    count: int, passes: list[tuple[int, int, int, bytes]], samples: list[int]
) -> dict[str, Any]:
    wall = min(p[0] for p in passes)
    cpu = min(p[1] for p in passes)
    return {
        "commands": count,
        "passes": len(passes),
        "best_seconds": round(wall / 1e9, 3),
        "ops_per_s": round(count / (wall / 1e9)),
        "ops_per_cpu_s": round(count / (cpu / 1e9)),
        "latency": latency_summary(samples),
    }


# -- orchestration -------------------------------------------------------------------------


def _child(kind: str, stream: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [sys.executable, __file__, "--child", kind, "--stream", str(stream), "--out",
               str(out), "--repeats", str(args.repeats)]  # fmt: skip
    if args.profile:
        command.append("--profile")
    env = {**os.environ, NATIVE_ENV: "1" if kind == "compiled" else "0"}
    try:
        subprocess.run(command, env=env, check=True)  # noqa: S603 - this very script, fresh interpreter
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        out.unlink(missing_ok=True)


def _print(name: str, figures: dict[str, Any]) -> None:
    latency = figures["latency"]
    print(
        f"{name:<22} {figures['ops_per_s']:>9,} ops/s ({figures['ops_per_cpu_s']:>9,} per CPU s)"
        f"   p50 {latency['p50_us']:6.2f} us   p99 {latency['p99_us']:6.2f} us"
    )


def orchestrate(args: argparse.Namespace) -> None:
    """Generate the stream, run every engine in its own process, compare, write the JSON."""
    print(f"generating {args.commands:,} commands (seed {args.seed}) ...")
    rows, shape = generate(args.commands, args.seed, args.spread)
    print("stream:", json.dumps(shape))
    runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        stream = Path(scratch) / "stream.pickle"
        stream.write_bytes(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
        del rows
        runs["ours_interpreted"] = _child("ours", stream, args)
        _print("ours (interpreted)", runs["ours_interpreted"])
        problem = "skipped (--no-compiled)" if args.no_compiled else build_native()
        if problem is None:
            runs["ours_compiled"] = _child("compiled", stream, args)
            _print("ours (mypyc)", runs["ours_compiled"])
        else:
            notes.append(f"compiled build: {problem}")
        if importlib.util.find_spec("lightmatchingengine") is None:
            notes.append("peer: lightmatchingengine missing; pip install -e '.[bench]'")
        else:
            runs["peer"] = _child("peer", stream, args)
            _print("lightmatchingengine", runs["peer"])
    payload = _summary(args, shape, runs, notes)
    for name, ratio in payload["ratio_vs_peer"].items():
        print(f"{name}: {ratio['wall']}x the peer's throughput ({ratio['cpu']}x per CPU second)")
    for note in notes:
        print("note:", note)
    print("wrote", write_result("matcher", payload))


def _summary(
    args: argparse.Namespace, shape: dict[str, Any], runs: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    volumes = {name: run["volume_base_atoms"] for name, run in runs.items()}
    if len(set(volumes.values())) != 1:
        raise SystemExit(f"engines traded different volumes: {volumes}")
    hashes = {run["final_hash"] for name, run in runs.items() if name.startswith("ours")}
    if len(hashes) != 1:
        raise SystemExit("interpreted and compiled builds ended on different hashes")
    peer = runs.get("peer")
    ratio = {
        name: {
            "wall": round(run["ops_per_s"] / peer["ops_per_s"], 2),
            "cpu": round(run["ops_per_cpu_s"] / peer["ops_per_cpu_s"], 2),
        }
        for name, run in runs.items()
        if peer is not None and name != "peer"
    }
    return {
        "command": " ".join(["bench/matcher_bench.py", *sys.argv[1:]]),
        "commands": args.commands,
        "seed": args.seed,
        "spread_ticks": args.spread,
        "stream": shape,
        "runs": runs,
        "ratio_vs_peer": ratio,
        "same_volume_traded": True,
        "notes": notes,
    }


def main() -> None:
    """Run the benchmark, or one engine's runs when called as a --child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20_240_601)
    parser.add_argument(
        "--spread",
        type=int,
        default=SPREAD,
        help="mean ticks between a resting order and the touch",
    )
    parser.add_argument("--repeats", type=int, default=3, help="throughput passes (best kept)")
    parser.add_argument(
        "--no-compiled", action="store_true", help="skip the run on the mypyc build"
    )
    parser.add_argument(
        "--profile", action="store_true", help="add a cProfile of ours (interpreted run)"
    )
    parser.add_argument("--child", choices=("ours", "compiled", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--stream", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is None:
        orchestrate(args)
        return
    build = select_build()  # before anything of ours is imported
    rows = pickle.loads(args.stream.read_bytes())  # noqa: S301 - written by our parent
    if args.child == "peer":
        result = run_peer(rows, args.repeats)
    else:
        result = run_ours(rows, args.repeats, build, args.profile and build == "interpreted")
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
