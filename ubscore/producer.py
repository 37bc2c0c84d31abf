"""The ack path: the core decides, the log records, and only then does the caller hear back.

Every request runs the same steps (DESIGN §1, §2):
1. the core checks it and changes its state in RAM at once (funds frozen or moved), so two
   concurrent requests can never spend the same funds;
2. the command or ledger event the core returned joins the next Kafka transaction of the
   shard's transactional producer (group commit: the records of concurrent requests, and of a
   batched request, are committed together: those queued while the previous transaction
   committed, plus those arriving within an optional linger; at most `max_records` a
   transaction, one transaction at a time);
3. once that transaction commits, the core is told each record's partition and offset
   (`apply_command` / `apply_ledger`), which confirms it;
4. the caller is answered.
A request naming a client_order_id or reference_id whose original is still between 2 and 3
waits for the original's outcome: nothing is acked before the log has it.

If step 2 or 3 fails, the state may hold a change the log does not (or the reverse), and
there is no telling which: the service fail-stops (`Lifecycle.fail`) instead of rolling back,
and the caller hears UNAVAILABLE, safe to retry with the same id once it has recovered. A
fenced producer means another instance took the shard over (a hand-over): the service stops
at once the same way (`Lifecycle.fence`, exit status EXIT_FENCED); the new owner answers a
retry from the log. Steps 2-3 run in the commit loop, so a caller that goes away (deadline,
cancel) cannot cut a transaction short. When idle, the loop commits a transaction holding only
the engine offsets applied (a heartbeat), so a fenced instance notices within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ordermesh.bus.base import (
    Producer,
    ProducerFencedError,
    Record,
    TopicPartition,
    appends_at_once,
)
from ordermesh.codec import encode_command, encode_ledger_event
from ordermesh.events import CancelOrder
from ordermesh.model import AccountId, Asset, ClientOrderId, OrderId, OrdermeshError, Symbol
from ubscore.core import Balance, Funding, Reservation, ReserveRequest, UBSCore
from ubscore.lifecycle import Lifecycle, LogTopics
from ubscore.metrics import UBSCoreMetrics

Confirm = Callable[[int, int], None]
"""Tells the core the (partition, offset) the log gave a record."""
HeartbeatOffsets = Callable[[], Mapping[TopicPartition, int]]
"""The offsets a heartbeat transaction commits (the engine offsets applied)."""

_K = TypeVar("_K", bound=Hashable)
_R = TypeVar("_R")
_ORDERS: Final = "orders"
_LEDGER: Final = "ledger"
_KINDS: Final = (_ORDERS, _LEDGER)


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """How records are grouped into transactions."""

    linger_seconds: float = 0.0
    """How long the first record of a transaction waits for others to join it; with 0, the
    records that arrive while one transaction commits form the next."""
    max_records: int = 500
    """The most records in one transaction."""
    heartbeat_seconds: float = 2.0
    """Idle this long, the loop commits a heartbeat transaction (noticing a fence)."""
    heartbeat_group: str = ""
    """The group the heartbeat's offsets are committed to; empty: no heartbeat."""


@dataclass(eq=False, slots=True)
class _Pending:
    """One record waiting for its transaction."""

    which: str
    topic: str
    key: bytes
    value: bytes
    confirm: Confirm
    future: asyncio.Future[None]
    started: float


class LogWriter:
    """The core behind a log-then-ack gate; the only way requests reach the core.

    Args:
        producer: a started transactional producer (the shard's transactional id).
        topics: where commands and ledger events go.
        lifecycle: refuses requests unless live; takes the fail-stop.
        metrics: produce latency.
        on_confirmed: told of every record the log confirmed (the snapshot schedule).
        clock: Unix nanoseconds, stamped on every command and event.
        policy: linger, batch bound and heartbeat of the group commit.
        heartbeat_offsets: what a heartbeat transaction commits.
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
        policy: CommitPolicy = CommitPolicy(),
        heartbeat_offsets: HeartbeatOffsets = dict,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._on_confirmed = on_confirmed
        self._clock = clock
        self._policy = policy
        self._heartbeat_offsets = heartbeat_offsets
        self._core: UBSCore | None = None
        self._orders: _InFlight[OrderId] = _InFlight()
        self._funding: _InFlight[tuple[AccountId, str]] = _InFlight()
        self._queue: list[_Pending] = []
        self._queued = asyncio.Event()
        self._in_flight: set[asyncio.Future[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._loop: asyncio.Task[None] | None = None
        self._closing = False

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
        reservation, logged = self._reserve(core, request)
        await _outcome(logged)
        return reservation

    async def reserve_each(
        self, requests: Sequence[_R], decode: Callable[[_R], ReserveRequest]
    ) -> list[Reservation | OrdermeshError]:
        """`reserve` for each request (decoded by `decode`) in turn, answered together.

        It is `reserve` called for every request at once, in order: each is decoded and
        reserved in the core in the order given (a client_order_id repeated in the batch is
        a duplicate of the first), their records join the next transactions, and this
        returns once the log has every one, with no task per request.

        Returns:
            Per request, its Reservation, or the OrdermeshError `reserve` would have raised
            (decode's included).

        Raises:
            Exception: what `reserve` would have raised unexpectedly (a bug), once every
                request has settled.
        """
        try:
            core = await self._admit()
        except OrdermeshError as e:
            return [e] * len(requests)
        reserved: list[Reservation | Exception] = []
        logs: list[asyncio.Future[None] | None] = []
        for request in requests:
            try:
                reservation, logged = self._reserve(core, decode(request))
            except Exception as e:  # this request's own outcome; the others go on
                reserved.append(e)
                logs.append(None)
            else:
                reserved.append(reservation)
                logs.append(logged)
        waiting = {logged for logged in logs if logged is not None}
        if waiting:
            await asyncio.wait(waiting)  # never cancels them: a transaction is not cut short
        return [_answer(outcome, logged) for outcome, logged in zip(reserved, logs, strict=True)]

    def _reserve(
        self, core: UBSCore, request: ReserveRequest
    ) -> tuple[Reservation, asyncio.Future[None] | None]:
        """Reserve in the core; the future ends once the log has the order (or its original)."""
        reservation = core.reserve(request, self._clock())
        order = reservation.order
        if reservation.duplicate:
            return reservation, self._orders.get(order.order_id)

        def confirm(partition: int, offset: int) -> None:
            core.apply_command(order, partition, offset)

        logged = self._append(_ORDERS, order.symbol, encode_command(order), confirm)
        self._orders.track(order.order_id, logged)
        return reservation, logged

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

        await _outcome(self._append(_ORDERS, command.symbol, encode_command(command), confirm))
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
        logged = self._append(_LEDGER, key, encode_ledger_event(event), confirm)
        self._funding.track(token, logged)
        await _outcome(logged)
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

    def _append(self, which: str, key: str, value: bytes, confirm: Confirm) -> asyncio.Future[None]:
        """Queue a record for the next transaction; the future ends when it is committed."""
        self._lifecycle.check()  # after a failure nothing joins a transaction any more
        topic = self._topics.orders if which == _ORDERS else self._topics.ledger
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._settle)
        self._in_flight.add(future)
        started = time.perf_counter()
        self._queue.append(_Pending(which, topic, key.encode(), value, confirm, future, started))
        self._queued.set()
        return future

    def start(self) -> None:
        """Start the commit loop (once live); it runs until `close` or a failure."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._commit_loop(), name="ubscore-commits")

    async def close(self) -> None:
        """Commit what is queued, then end the commit loop."""
        self._closing = True
        self._queued.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)

    async def _commit_loop(self) -> None:
        """One transaction at a time until closed; a failure is a fail-stop (or a fence).

        Not a supervised loop: a graceful stop must not cancel a transaction half-way, so
        the loop ends only once `close` asked and the queue is empty.
        """
        try:
            while not (self._closing and not self._queue):
                await self._next_transaction()
        except Exception as e:
            if self._lifecycle.failure is None:  # else the transaction already failed it
                self._lifecycle.fail(f"the commit loop failed: {e!r}", e)
            self._refuse_queued()

    async def _next_transaction(self) -> None:
        policy = self._policy
        try:
            async with asyncio.timeout(policy.heartbeat_seconds):
                await self._queued.wait()
        except TimeoutError:
            await self._heartbeat()
            return
        if not self._queue:  # woken by close
            return
        if len(self._queue) < policy.max_records and policy.linger_seconds > 0:
            await asyncio.sleep(policy.linger_seconds)  # the linger: let concurrent calls join
        batch, self._queue = self._queue[: policy.max_records], self._queue[policy.max_records :]
        if not self._queue:
            self._queued.clear()
        await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        producer = self._producer
        try:
            await producer.begin_transaction()
            records = await _send_in_order(producer, batch)
            await producer.commit_transaction()
        except ProducerFencedError as e:
            error = self._lifecycle.fence(
                "the producer was fenced: another ubscore instance took this shard over", e
            )
            _refuse(batch, error)
            raise error from e
        except Exception as e:
            # The core holds changes the log may or may not have: fail-stop, never undo.
            error = self._lifecycle.fail(
                f"a transaction of {len(batch)} records failed; its outcome is unknown", e
            )
            _refuse(batch, error)
            raise error from e
        produce_seconds = {which: self._metrics.produce_seconds.labels(which) for which in _KINDS}
        for index, (pending, record) in enumerate(zip(batch, records, strict=True)):
            try:
                pending.confirm(record.partition, record.offset)
            except Exception as e:
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                error = self._lifecycle.fail(f"{where} is logged but the core refused it", e)
                _refuse(batch[index:], error)
                raise error from e
            produce_seconds[pending.which].observe(time.perf_counter() - pending.started)
            pending.future.set_result(None)
        self._on_confirmed(len(batch))

    async def _heartbeat(self) -> None:
        """Commit the engine offsets applied in a transaction of their own: fenced, it fails."""
        offsets = self._heartbeat_offsets()
        if not self._policy.heartbeat_group or not offsets:
            return
        producer = self._producer
        try:
            await producer.begin_transaction()
            await producer.send_offsets_to_transaction(offsets, self._policy.heartbeat_group)
            await producer.commit_transaction()
        except ProducerFencedError as e:
            error = self._lifecycle.fence(
                "the producer was fenced: another ubscore instance took this shard over", e
            )
            raise error from e

    def _refuse_queued(self) -> None:
        queued, self._queue = self._queue, []
        self._queued.clear()
        _refuse(queued, self._lifecycle.unavailable())

    def _settle(self, future: asyncio.Future[None]) -> None:
        self._in_flight.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: the callers heard it, or none was left to hear it

    # -- quiescence ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def quiesced(self) -> AsyncIterator[None]:
        """Hold new requests back and wait until every record settled, for the block's length.

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
        """Return once no record is waiting for its transaction (each confirmed or failed)."""
        while pending := {future for future in self._in_flight if not future.done()}:
            await asyncio.wait(pending)


def _answer(
    outcome: Reservation | Exception, logged: asyncio.Future[None] | None
) -> Reservation | OrdermeshError:
    """What `reserve` ended with for one request of `reserve_each`: a refusal is returned.

    Raises:
        Exception: a failure that is not a refusal.
    """
    if isinstance(outcome, Exception):
        failure: BaseException = outcome
    else:
        failed = None if logged is None else logged.exception()
        if failed is None:
            return outcome
        failure = failed
    if isinstance(failure, OrdermeshError):
        return failure
    raise failure


def _refuse(batch: list[_Pending], error: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)


async def _send_in_order(producer: Producer, batch: list[_Pending]) -> list[Record]:
    """Send every record of the batch at once; the producer appends them in call order.

    The first failure is raised at once, the other sends cancelled: the transaction is lost
    anyway, and after a fence the rest may only end at the delivery timeout. A producer that
    appends at once (the in-memory bus) is sent to one record after the other, which is the
    same, without a task per record.
    """
    if appends_at_once(producer):  # each send returns at once: in a row is the same order
        return [await producer.send(p.topic, p.value, key=p.key) for p in batch]
    sends = [asyncio.ensure_future(producer.send(p.topic, p.value, key=p.key)) for p in batch]
    done, pending = await asyncio.wait(sends, return_when=asyncio.FIRST_EXCEPTION)
    for send in pending:
        send.cancel()
    # Every failure is retrieved; the first (in call order) speaks for the transaction.
    failures = [send.exception() for send in sends if send in done]
    first = next((failure for failure in failures if failure is not None), None)
    if first is not None:
        raise first
    return [send.result() for send in sends]


class _InFlight(Generic[_K]):
    """Records in flight by the id a duplicate request would name; forgets finished ones."""

    def __init__(self) -> None:
        self._futures: dict[_K, asyncio.Future[None]] = {}

    def track(self, token: _K, future: asyncio.Future[None]) -> None:
        self._futures[token] = future
        future.add_done_callback(lambda done: self._forget(token, done))

    def get(self, token: _K) -> asyncio.Future[None] | None:
        return self._futures.get(token)

    def _forget(self, token: _K, future: asyncio.Future[None]) -> None:
        if self._futures.get(token) is future:
            del self._futures[token]


async def _outcome(future: asyncio.Future[None] | None) -> None:
    """Wait for a record's transaction (if any) without letting the caller's cancel reach it."""
    if future is not None:
        await asyncio.shield(future)
