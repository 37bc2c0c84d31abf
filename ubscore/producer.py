"""The ack path: the core decides, the log records, and only then does the caller hear back.

Every request runs the same steps (DESIGN §1, §2):
1. the core checks it and changes its state in RAM at once (funds frozen or moved), so two
   concurrent requests can never spend the same funds;
2. the command or ledger event the core returned is produced (acks=all, idempotent);
3. the core is told the record's partition and offset (`apply_command` / `apply_ledger`),
   which confirms it;
4. the caller is answered.
A request naming a client_order_id or reference_id whose original is still between 2 and 3
waits for the original's outcome: nothing is acked before the log has it.

If step 2 or 3 fails, the state may hold a change the log does not (or the reverse), and
there is no telling which: the service fail-stops (`Lifecycle.fail`) instead of rolling back,
and the caller hears UNAVAILABLE, safe to retry with the same id once it has recovered. Steps
2-3 run in a task of their own, so a caller that goes away (deadline, cancel) cannot cut a
produce short.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Final, Generic, TypeVar

from ordermesh.bus.base import Producer
from ordermesh.codec import encode_command, encode_ledger_event
from ordermesh.events import CancelOrder
from ordermesh.model import AccountId, Asset, ClientOrderId, OrderId, Symbol
from ubscore.core import Balance, Funding, Reservation, ReserveRequest, UBSCore
from ubscore.lifecycle import Lifecycle, LogTopics
from ubscore.metrics import UBSCoreMetrics

Confirm = Callable[[int, int], None]
"""Tells the core the (partition, offset) the log gave a record."""

_K = TypeVar("_K", bound=Hashable)
_ORDERS: Final = "orders"
_LEDGER: Final = "ledger"


class LogWriter:
    """The core behind a produce-then-ack gate; the only way requests reach the core.

    Args:
        producer: a started, idempotent (non-transactional) producer.
        topics: where commands and ledger events go.
        lifecycle: refuses requests unless live; takes the fail-stop.
        metrics: produce latency.
        on_confirmed: told of every record the log confirmed (the snapshot schedule).
        clock: Unix nanoseconds, stamped on every command and event.
    """

    def __init__(
        self,
        producer: Producer,
        topics: LogTopics,
        lifecycle: Lifecycle,
        metrics: UBSCoreMetrics,
        *,
        on_confirmed: Callable[[int], None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._on_confirmed = on_confirmed
        self._clock = clock
        self._core: UBSCore | None = None
        self._orders: _InFlight[OrderId] = _InFlight()
        self._funding: _InFlight[tuple[AccountId, str]] = _InFlight()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()

    def attach(self, core: UBSCore) -> None:
        """Serve requests with `core` (live, recovered) from now on."""
        self._core = core

    @property
    def core(self) -> UBSCore:
        """The live core.

        Raises:
            OrdermeshError: UNAVAILABLE before recovery attached one.
        """
        if self._core is None:
            raise self._lifecycle.unavailable()
        return self._core

    # -- requests ------------------------------------------------------------------------------

    async def reserve(self, request: ReserveRequest) -> Reservation:
        """Freeze the order's funds, log its NewOrder, and return once the log has it.

        Raises:
            OrdermeshError: the core refused it (nothing changed), or UNAVAILABLE.
        """
        core = await self._admit()
        reservation = core.reserve(request, self._clock())
        order = reservation.order
        if reservation.duplicate:
            await _outcome(self._orders.get(order.order_id))
            return reservation

        def confirm(partition: int, offset: int) -> None:
            core.apply_command(order, partition, offset)

        task = self._spawn(_ORDERS, order.symbol, encode_command(order), confirm)
        self._orders.track(order.order_id, task)
        await _outcome(task)
        return reservation

    async def cancel(
        self,
        account_id: AccountId,
        symbol: Symbol,
        order_id: OrderId,
        client_order_id: ClientOrderId,
    ) -> CancelOrder:
        """Log a CancelOrder for an open order of the account; return once the log has it.

        A cancel of an order whose NewOrder is still being logged waits for it first, so the
        cancel never lands in the log ahead of its order.

        Raises:
            OrdermeshError: the order is not an open order of the account, or UNAVAILABLE.
        """
        core = await self._admit()
        command = core.cancel(account_id, symbol, order_id, client_order_id, self._clock())
        await _outcome(self._orders.get(command.order_id))

        def confirm(partition: int, offset: int) -> None:
            core.apply_command(command, partition, offset)

        await _outcome(self._spawn(_ORDERS, command.symbol, encode_command(command), confirm))
        return command

    async def deposit(
        self, account_id: AccountId, asset: Asset, amount: int, reference_id: str
    ) -> Funding:
        """Credit the account, log the LedgerEvent, return once the log has it.

        Raises:
            OrdermeshError: the core refused it (nothing changed), or UNAVAILABLE.
        """
        core = await self._admit()
        funding = core.deposit(account_id, asset, amount, reference_id, self._clock())
        return await self._fund(core, funding)

    async def withdraw(
        self, account_id: AccountId, asset: Asset, amount: int, reference_id: str
    ) -> Funding:
        """Debit the account, log the LedgerEvent, return once the log has it.

        Raises:
            OrdermeshError: the core refused it (nothing changed), or UNAVAILABLE.
        """
        core = await self._admit()
        funding = core.withdraw(account_id, asset, amount, reference_id, self._clock())
        return await self._fund(core, funding)

    async def _fund(self, core: UBSCore, funding: Funding) -> Funding:
        event = funding.event
        token = (event.account_id, event.reference_id)
        if funding.duplicate:
            await _outcome(self._funding.get(token))
            return funding

        def confirm(partition: int, offset: int) -> None:
            core.apply_ledger(event, partition, offset)

        key = str(event.account_id)
        task = self._spawn(_LEDGER, key, encode_ledger_event(event), confirm)
        self._funding.track(token, task)
        await _outcome(task)
        return funding

    def balances(self, account_id: AccountId) -> tuple[Balance, ...]:
        """The account's balances now.

        Raises:
            OrdermeshError: UNAVAILABLE unless live.
        """
        self._lifecycle.check()
        return self.core.balances(account_id)

    # -- the log -------------------------------------------------------------------------------

    async def _admit(self) -> UBSCore:
        self._lifecycle.check()
        if not self._open.is_set():
            await self._open.wait()
            self._lifecycle.check()
        return self.core

    def _spawn(self, which: str, key: str, value: bytes, confirm: Confirm) -> asyncio.Task[None]:
        topic = self._topics.orders if which == _ORDERS else self._topics.ledger
        task = asyncio.create_task(self._produce(which, topic, key.encode(), value, confirm))
        self._tasks.add(task)
        task.add_done_callback(self._settle)
        return task

    async def _produce(
        self, which: str, topic: str, key: bytes, value: bytes, confirm: Confirm
    ) -> None:
        started = time.perf_counter()
        try:
            record = await self._producer.send(topic, value, key=key)
        except Exception as e:
            # The core holds a change the log may or may not have: fail-stop, never undo.
            raise self._lifecycle.fail(
                f"produce to {topic} (key {key.decode()}) failed; its outcome is unknown", e
            ) from e
        try:
            confirm(record.partition, record.offset)
        except Exception as e:
            where = f"{topic}[{record.partition}]@{record.offset}"
            raise self._lifecycle.fail(f"{where} is logged but the core refused it", e) from e
        self._metrics.produce_seconds.labels(which).observe(time.perf_counter() - started)
        self._on_confirmed(1)

    def _settle(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the callers heard it, or none was left to hear it

    # -- quiescence ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def quiesced(self) -> AsyncIterator[None]:
        """Hold new requests back and wait until every produce settled, for the block's length.

        Inside the block no record the core issued is unconfirmed (unless one failed), so a
        snapshot may be taken. Requests that arrive meanwhile wait at the gate.
        """
        self._open.clear()
        try:
            await self.wait_idle()
            yield
        finally:
            self._open.set()

    async def wait_idle(self) -> None:
        """Return once no produce is in flight (each one confirmed or failed)."""
        while pending := {task for task in self._tasks if not task.done()}:
            await asyncio.wait(pending)


class _InFlight(Generic[_K]):
    """Produces in flight by the id a duplicate request would name; forgets finished ones."""

    def __init__(self) -> None:
        self._tasks: dict[_K, asyncio.Task[None]] = {}

    def track(self, token: _K, task: asyncio.Task[None]) -> None:
        self._tasks[token] = task
        task.add_done_callback(lambda done: self._forget(token, done))

    def get(self, token: _K) -> asyncio.Task[None] | None:
        return self._tasks.get(token)

    def _forget(self, token: _K, task: asyncio.Task[None]) -> None:
        if self._tasks.get(token) is task:
            del self._tasks[token]


async def _outcome(task: asyncio.Task[None] | None) -> None:
    """Wait for a produce (if any) without letting the caller's cancel reach it."""
    if task is not None:
        await asyncio.shield(task)
