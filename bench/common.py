"""What every benchmark shares: latency summaries, the JSON result file, the compiled build."""

from __future__ import annotations

import asyncio
import importlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NATIVE = ROOT / "build" / "native"
"""Where scripts/build_native.py puts the mypyc-compiled modules (never in the source tree)."""
NATIVE_ENV = "ORDERMESH_NATIVE"
"""Set to 1 in a benchmark's environment to run it on the compiled modules."""


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (fraction in 0..1)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of nanosecond samples, in microseconds."""
    ordered = sorted(samples_ns)
    summary = {
        f"p{label}_us": percentile(ordered, q) / 1_000
        for label, q in (("50", 0.50), ("90", 0.90), ("99", 0.99), ("99.9", 0.999))
    }
    summary["max_us"] = ordered[-1] / 1_000
    return summary


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json with the machine and time added; return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def build_native() -> str | None:
    """Build build/native if it is missing or stale; None when ready, else why not."""
    done = subprocess.run(  # noqa: S603 - our own interpreter on our own build script
        [sys.executable, str(ROOT / "scripts" / "build_native.py")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return f"scripts/build_native.py failed: {(done.stdout + done.stderr)[-2000:]}"
    return None


def select_build() -> str:
    """Put build/native first on sys.path if NATIVE_ENV is 1; the build's name.

    Call it before importing anything of ordermesh, matcher or ubscore.
    """
    if os.environ.get(NATIVE_ENV) != "1":
        return "interpreted"
    sys.path.insert(0, str(NATIVE))
    return "compiled"


def native_build() -> dict[str, Any]:
    """Import every module the build compiled; check each is its extension in build/native.

    Returns:
        The build's mypy version and source digest, and its modules (name -> file).

    Raises:
        SystemExit: no build, or a module that came from anywhere else (a stale sys.path).
    """
    try:
        manifest = json.loads((NATIVE / "BUILD.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"no compiled build in {NATIVE}: run scripts/build_native.py") from e
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    files: dict[str, str] = {}
    for name in manifest["compiled"]:
        path = Path(importlib.import_module(name).__file__ or "")
        if not (path.name.endswith(suffix) and path.is_relative_to(NATIVE)):
            raise SystemExit(f"{name} was imported from {path}, not compiled from {NATIVE}")
        files[name] = str(path.relative_to(ROOT))
    for name, where in files.items():
        print(f"  compiled: {name:<24} {where}")
    return {"mypy": manifest["mypy"], "sources_sha256": manifest["sources_sha256"],
            "modules": files}  # fmt: skip


_L = TypeVar("_L")
_R = TypeVar("_R")


def _child_main(work: Callable[[_L], Coroutine[Any, Any, _R]], load: _L, pipe: Any) -> None:
    """In the child process: run `work(load)`, send back its result (or the error)."""
    try:
        result = asyncio.run(work(load))
    except BaseException as e:  # report anything to the parent, which decides
        pipe.send(("error", repr(e)))
    else:
        pipe.send(("ok", result))
    finally:
        pipe.close()


async def in_own_process(
    work: Callable[[_L], Coroutine[Any, Any, _R]], load: _L, seconds: float, name: str
) -> _R:
    """Run `work(load)` in a fresh process (spawned: grpc and fork do not mix); its result.

    Args:
        work: a module-level coroutine function (it is pickled by reference).
        load: its argument (pickled).
        seconds: how long to wait for the result before giving up.
        name: the process's name, for the errors.
    """
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(work, load, sending), name=name)
    process.start()
    sending.close()
    try:
        if not await asyncio.to_thread(receiving.poll, seconds):
            raise RuntimeError(f"the {name} process sent nothing within {seconds:.0f} s")
        kind, payload = receiving.recv()
        if kind != "ok":
            raise RuntimeError(f"the {name} process failed: {payload}")
        result: _R = payload
        return result
    finally:
        receiving.close()
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 10)
