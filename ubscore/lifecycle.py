"""The ubscore service's state (recovering, live, failed), its health, and its topic names.

Health is SERVING only while the core is live and the bus answered its last probe. A failure
is one-way (fail-stop, DESIGN §2): the service stops serving at once, every later request is
refused with UNAVAILABLE, and the supervisor's fail-stop loop ends the process non-zero; the
next start rebuilds the state from snapshot + log.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, NoReturn

import structlog

from ordermesh.bus import topics
from ordermesh.bus.base import TopicSpec
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.runtime import FatalError, FencedError
from ordermesh.snapshots import SNAPSHOTS
from ubscore.core import ENGINE_TOPIC, LEDGER_TOPIC, ORDERS_TOPIC

log = structlog.get_logger(__name__)

TOPIC_PREFIX: Final = re.compile(r"[A-Za-z0-9._-]{0,200}")
"""What a topic prefix may hold: the characters Kafka allows in a topic name."""


@dataclass(frozen=True, slots=True)
class LogTopics:
    """The topics ubscore reads and writes, as named on the bus.

    The core knows its topics by their plain names (ordermesh.orders, ...); a prefix lets
    several meshes share one cluster, and only the adapters see it.
    """

    orders: str = topics.ORDERS
    ledger: str = topics.LEDGER
    engine: str = topics.ENGINE
    snapshots: str = SNAPSHOTS

    @classmethod
    def with_prefix(cls, prefix: str) -> LogTopics:
        """Every topic name with `prefix` in front.

        Raises:
            ValueError: the prefix holds characters Kafka refuses in a topic name.
        """
        if TOPIC_PREFIX.fullmatch(prefix) is None:
            raise ValueError(
                f"topic prefix may hold up to 200 of A-Z a-z 0-9 . _ -, was {prefix!r}"
            )
        return cls(
            prefix + topics.ORDERS,
            prefix + topics.LEDGER,
            prefix + topics.ENGINE,
            prefix + SNAPSHOTS,
        )

    def logical(self, topic: str) -> str:
        """The core's name for a bus topic (ordermesh.orders, .ledger or .engine).

        Raises:
            ValueError: not one of the three log topics.
        """
        names = {self.orders: ORDERS_TOPIC, self.ledger: LEDGER_TOPIC, self.engine: ENGINE_TOPIC}
        try:
            return names[topic]
        except KeyError:
            raise ValueError(f"{topic!r} is none of ubscore's log topics") from None

    def specs(self, partitions: int) -> list[TopicSpec]:
        """The three log topics, each with `partitions` partitions."""
        return [TopicSpec(name, partitions) for name in (self.orders, self.ledger, self.engine)]


class Phase(enum.Enum):
    """Where the service is in its life."""

    RECOVERING = "recovering"
    STANDBY = "standby"
    LIVE = "live"
    FAILED = "failed"


SetServing = Callable[[bool], Awaitable[None]]


class Lifecycle:
    """Recovering [-> standby] -> live -> failed; pushes SERVING/NOT_SERVING to health.

    Args:
        set_serving: reports health (GrpcServer.set_serving).
    """

    def __init__(self, set_serving: SetServing) -> None:
        self._set_serving = set_serving
        self._phase = Phase.RECOVERING
        self._reachable = True
        self._reported: bool | None = None
        self._failure: FatalError | None = None
        self._failed = asyncio.Event()
        self._live = asyncio.Event()
        self._updates: set[asyncio.Task[None]] = set()

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def failure(self) -> str | None:
        """Why the service fail-stopped, or None."""
        return None if self._failure is None else str(self._failure)

    @property
    def serving(self) -> bool:
        """Whether health says SERVING: live, and the bus answered its last probe."""
        return self._phase is Phase.LIVE and self._reachable

    def stand_by(self) -> None:
        """Recovery is done but another instance owns the shard: keep refusing requests."""
        if self._phase is Phase.RECOVERING:
            self._phase = Phase.STANDBY

    async def go_live(self) -> None:
        """Recovery (or a take-over) is done: accept requests (unless a failure came first)."""
        if self._phase in (Phase.RECOVERING, Phase.STANDBY):
            self._phase = Phase.LIVE
            self._live.set()
        await self.report()

    async def wait_live(self) -> None:
        """Return once the service is live.

        Raises:
            FatalError: the service failed first (it will never be live).
        """
        live = asyncio.ensure_future(self._live.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({live, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.cancel()
            failed.cancel()
        if self._failure is not None and not self._live.is_set():
            raise self._failure

    async def set_reachable(self, reachable: bool) -> None:
        """Record whether the bus answered its last probe; health follows."""
        if reachable != self._reachable:
            log.warning("bus reachability changed", reachable=reachable)
        self._reachable = reachable
        await self.report()

    async def report(self) -> None:
        """Push the current health, if it changed since last pushed."""
        serving = self.serving
        if serving != self._reported:
            self._reported = serving
            await self._set_serving(serving)

    def fence(self, reason: str, error: BaseException | None = None) -> OrdermeshError:
        """Stop as `fail` does, because another instance took over (exit EXIT_FENCED).

        Returns:
            The UNAVAILABLE refusal to answer the requests in progress with.
        """
        return self.fail(reason, error, fenced=True)

    def fail(
        self, reason: str, error: BaseException | None = None, *, fenced: bool = False
    ) -> OrdermeshError:
        """Fail-stop: stop serving now, and have the fail-stop loop end the process.

        Only the first failure is kept; later ones are logged. Safe to call from any task.

        Returns:
            The UNAVAILABLE refusal to answer the request in progress with.
        """
        if self._failure is None:
            self._failure = FencedError(reason) if fenced else FatalError(reason)
            if error is not None:
                self._failure.__cause__ = error
            self._phase = Phase.FAILED
            log.error("stopped serving", reason=reason, error=repr(error))
            self._failed.set()
            update = asyncio.get_running_loop().create_task(self.report())
            self._updates.add(update)
            update.add_done_callback(self._updates.discard)
        else:
            log.error("failure after fail-stop", reason=reason, error=repr(error))
        return self.unavailable()

    def unavailable(self) -> OrdermeshError:
        """The refusal of a request the service cannot take now (UNAVAILABLE)."""
        if self._phase is Phase.STANDBY:
            message = (
                "this ubscore instance is a standby; the shard's owner serves it: safe to "
                "retry with the same client_order_id or reference_id"
            )
        elif self._phase is Phase.FAILED:
            message = (
                f"ubscore stopped serving ({self._failure}); it restarts and recovers from its "
                "log: safe to retry with the same client_order_id or reference_id"
            )
        else:
            message = (
                "ubscore is recovering its state from snapshot + log; safe to retry with the "
                "same client_order_id or reference_id"
            )
        return OrdermeshError(RejectReason.UNAVAILABLE, message)

    def check(self) -> None:
        """Raise UNAVAILABLE unless the service is live."""
        if self._phase is not Phase.LIVE:
            raise self.unavailable()

    async def fail_stop(self) -> NoReturn:
        """The fail-stop loop: wait for a failure, then raise it to the supervisor."""
        await self._failed.wait()
        if self._failure is None:  # pragma: no cover - the event is set after the failure
            raise FatalError("fail-stop without a recorded failure")
        raise self._failure
