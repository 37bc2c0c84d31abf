"""Helpers shared by the server harnesses: CI policy, async bridging, ports, logs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def in_ci() -> bool:
    """Tell whether the tests run in CI, where no server may be skipped.

    Returns:
        True when the environment variable CI is set to anything but a false word.
    """
    return os.environ.get("CI", "").strip().lower() not in _FALSE_WORDS


def unavailable(reason: str) -> BaseException:
    """Build the outcome for tests whose server cannot run here: a skip, or in CI a failure.

    Raise it `from None` inside an exception handler, so the report is just the reason.

    Args:
        reason: What is missing and how to get it.
    """
    if in_ci():
        return pytest.fail.Exception(f"{reason} (CI is set: an error, not a skip)", pytrace=False)
    return pytest.skip.Exception(reason)


def env_override(*names: str) -> str | None:
    """Return the first non-empty value among the environment variables `names`.

    Args:
        *names: Variable names, most specific first.

    Returns:
        The value, stripped, or None when none of them is set.
    """
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Sync fixtures use this so they never touch the event loop of the test they serve,
    whatever its scope, and so they may be called from inside a running loop.

    Args:
        factory: Builds the coroutine; it is called inside the worker thread.

    Returns:
        The coroutine's result (its exception propagates).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="servers") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 60) -> str:
    """Return the last `lines` lines of a text file, or a note when it is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def cache_root() -> Path:
    """Return the directory that keeps downloaded servers and tools between runs."""
    root = os.environ.get("ORDERMESH_CACHE", "").strip() or "~/.cache/ordermesh"
    return Path(root).expanduser()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
