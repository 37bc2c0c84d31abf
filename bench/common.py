"""What every benchmark shares: latency summaries and the JSON result file."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


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
