"""ubscore and the matcher on one bus, and the log as the judge of what they did.

The running services, requests and log readers come from the services' own harnesses
(`tests.integration.ubscore.harness`, `tests.integration.matcher.harness`). What is added
here: a matcher in this process that trades the markets ubscore trades (config/markets.toml,
the one file every service loads; the matcher harness runs its own five-market table), the
two services started together, the joint views the tests compare (the orders topic as the
matcher's input, the engine topic per symbol, a UBSCore rebuilt from the log alone), and
ports for services that are killed and restarted on the same one. Waits are conditions with
deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from matcher.bootstrap import MatcherService
from matcher.bootstrap import build as build_matcher
from ordermesh.bus.base import Bus, Record
from ordermesh.codec import decode_command, decode_engine_event
from ordermesh.events import EngineEvent
from ordermesh.markets import DEFAULT_MARKETS_PATH
from ordermesh.model import AccountId
from tests.integration.matcher.harness import (
    PARTITIONS,
    Produced,
    read_engine,
    serving,
    wait_processed,
)
from tests.integration.matcher.harness import settings as matcher_settings
from tests.integration.ubscore.harness import (
    DEADLINE_SECONDS,
    MARKETS,
    Running,
    balances,
    read_all,
    running,
)
from ubscore.consumer import apply_record
from ubscore.core import UBSCore
from ubscore.lifecycle import LogTopics

if TYPE_CHECKING:
    from tests.integration.ubscore.harness import Stub

Holdings = dict[str, tuple[int, int]]
"""{asset: (available, frozen)}, as GetBalances reports an account."""


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")


def unused_port() -> int:
    """A free port on 127.0.0.1 below the ephemeral range, for a service to listen on.

    The kernel hands out ports of the ephemeral range to every bind to port 0 on the host (a
    server on port 0, `free_port`, an outgoing connection), so a port from there, freed by a
    SIGKILL, may be taken by another test before the service restarts on it. Below the
    range only an explicit choice takes it.
    """
    text = EPHEMERAL_PORTS.read_text() if EPHEMERAL_PORTS.exists() else "32768 60999"
    low = int(text.split()[0])
    for _ in range(100):
        port = random.randrange(10_000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 in 10000..{low - 1}")


def group_of(prefix: str) -> str:
    """The matchers' consumer group of a test (as the matcher harness names it)."""
    return matcher_settings(prefix, DEFAULT_MARKETS_PATH).group_id


@contextlib.asynccontextmanager
async def matcher_running(bus: Bus, prefix: str) -> AsyncIterator[MatcherService]:
    """A matcher in this process on config/markets.toml: SERVING, then stopped gracefully."""
    service = build_matcher(matcher_settings(prefix, DEFAULT_MARKETS_PATH), bus)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await serving(service, task)
        yield service
    finally:
        if not task.done():
            await service.stop()
        await asyncio.wait_for(asyncio.shield(task), DEADLINE_SECONDS)


@dataclass
class Mesh:
    """ubscore and a matcher, in this process, on one bus."""

    ubscore: Running
    matcher: MatcherService

    @property
    def stub(self) -> Stub:
        return self.ubscore.stub

    @property
    def topics(self) -> LogTopics:
        return self.ubscore.topics


@contextlib.asynccontextmanager
async def mesh(bus: Bus, prefix: str) -> AsyncIterator[Mesh]:
    """ubscore (which creates the topics), then a matcher; both SERVING."""
    async with (
        running(bus, prefix, partitions=PARTITIONS) as ubscore,
        matcher_running(bus, prefix) as matcher,
    ):
        yield Mesh(ubscore, matcher)


async def orders_logged(bus: Bus, topics: LogTopics) -> Produced:
    """Every command of the orders topic, with the record it is: the matcher's input."""
    return [(decode_command(record.value), record) for record in await read_all(bus, topics.orders)]


async def matched(bus: Bus, prefix: str, topics: LogTopics) -> Produced:
    """Wait until the matchers' group has committed every logged command; return them."""
    produced = await orders_logged(bus, topics)
    await wait_processed(bus, group_of(prefix), topics.orders, produced, DEADLINE_SECONDS)
    return produced


async def engine_events(bus: Bus, topics: LogTopics) -> dict[str, list[EngineEvent]]:
    """The committed engine topic, decoded, per symbol in log order."""
    return decoded(await read_engine(bus, topics.engine))


def decoded(published: Mapping[str, Sequence[Record]]) -> dict[str, list[EngineEvent]]:
    """Engine records per symbol (as `read_engine` returns them), decoded."""
    return {
        symbol: [decode_engine_event(record.value) for record in records]
        for symbol, records in published.items()
    }


async def replayed(bus: Bus, topics: LogTopics) -> UBSCore:
    """A UBSCore rebuilt from scratch by replaying the three topics, as a first start does."""
    core = UBSCore(MARKETS)
    for name in (topics.orders, topics.ledger, topics.engine):
        for record in await read_all(bus, name):
            apply_record(core, topics, record)
    core.finish_replay()
    return core


def held_by(core: UBSCore, account: int) -> Holdings:
    """What `core` holds for `account`, in GetBalances' shape."""
    return {b.asset: (b.available, b.frozen) for b in core.balances(AccountId(account))}


async def served(stub: Stub, accounts: Iterable[int]) -> dict[int, Holdings]:
    """GetBalances of each account."""
    return {account: await balances(stub, account) for account in accounts}


def totals(holdings: Iterable[Holdings]) -> Counter[str]:
    """Per asset, available + frozen summed over the accounts given."""
    total: Counter[str] = Counter()
    for held in holdings:
        for asset, (available, frozen) in held.items():
            total[asset] += available + frozen
    return total
