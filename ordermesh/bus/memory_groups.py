"""Consumer groups of the in-memory bus: members, eager rebalances, committed offsets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ordermesh.bus.base import RebalanceListener, TopicPartition

if TYPE_CHECKING:
    from ordermesh.bus.memory import _Log


@dataclass(eq=False, slots=True)
class Member:
    """What a group knows of a consumer; `positions` holds its assignment (None: unresolved)."""

    topics: tuple[str, ...] = ()
    listener: RebalanceListener | None = None
    positions: dict[TopicPartition, int | None] = field(default_factory=dict)
    failure: Exception | None = None
    settled: bool = True
    """False from a rebalance's start until this member's on_partitions_assigned returned."""

    async def notify(
        self, callback: Callable[[frozenset[TopicPartition]], Awaitable[None]]
    ) -> None:
        """Call a rebalance callback with this member's partitions; keep its failure."""
        # A listener failure must not break the rebalance of the other members: it is
        # raised from this consumer's next getmany instead (the Kafka adapter does the same).
        try:
            await callback(frozenset(self.positions))
        except Exception as exc:
            self.failure = self.failure or exc

    async def revoke(self) -> None:
        """Tell the listener its partitions are revoked, and drop them."""
        if self.listener is not None and self.positions:
            await self.notify(self.listener.on_partitions_revoked)
        self.positions = {}


class Group:
    """A consumer group: its committed offsets and its members, rebalanced eagerly."""

    def __init__(self, log: _Log) -> None:
        self.committed: dict[TopicPartition, int] = {}
        self.members: list[Member] = []
        self._log = log
        self._lock = asyncio.Lock()

    async def rebalance(
        self, *, joining: Member | None = None, leaving: Member | None = None
    ) -> None:
        """Revoke everything from every member, then hand out the new shares, in join order."""
        async with self._lock:
            members = [m for m in self.members if m is not leaving]
            if joining is not None and joining not in members:
                members.append(joining)
            plan = self._plan(members)
            for member in {*self.members, *members}:
                member.settled = False
            for member in self.members:
                await member.revoke()
            self.members = members
            for member in members:
                member.positions = dict.fromkeys(plan[id(member)])
            for member in members:
                if member.listener is not None:
                    await member.notify(member.listener.on_partitions_assigned)
                member.settled = True
                self._log.signal.notify()
            if leaving is not None:
                leaving.settled = True

    def _plan(self, members: list[Member]) -> dict[int, list[TopicPartition]]:
        """Sorted partitions dealt round-robin over the members subscribed to their topic."""
        plan: dict[int, list[TopicPartition]] = {id(m): [] for m in members}
        topics = sorted({topic for m in members for topic in m.topics})
        turn = itertools.count()
        for topic in topics:
            takers = [m for m in members if topic in m.topics]
            for index in range(len(self._log.partitions_of(topic))):
                taker = takers[next(turn) % len(takers)]
                plan[id(taker)].append(TopicPartition(topic, index))
        return plan
