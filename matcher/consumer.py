"""The matcher's log loop: own ordermesh.orders partitions, match them, publish exactly once.

Group membership decides which instance owns which partition (and so which symbols: a
symbol's commands are keyed by symbol, so they all live in one partition).

Taking partition p over (`on_partitions_assigned`):
1. start p's transactional producer, transactional id "<prefix>-matcher-orders-<p>". That
   fences any older owner and waits for its last transaction to finish, so
2. the group's committed offset C read next is final;
3. restore the book of every symbol of p from its snapshot (or a fresh book), and seek p to
   the oldest snapshot's offset + 1 (the beginning when a book has none);
4. replay silently every command below C: the books apply it and emit nothing (its events
   are already in ordermesh.engine). The books are deterministic and skip offsets they
   already hold, so at C they are exactly where the old owner left them.

From C on, each `getmany` batch is one transaction per partition: apply every command,
send its events (key = symbol), save due snapshots, send the consumed offsets, commit.
Anything the bus cannot do, a record that does not decode, a symbol outside the markets
table: fail-stop, never skip. Revocation waits for the batch in progress to commit, then
stops the partition's producer and drops its books. A fenced producer means another
instance took the partition over: the matcher stops (FencedError, exit EXIT_FENCED).

An instance promoted from standby (`run_owner`) owns every partition by assignment instead
of by group membership (a hand-over, DESIGN §9): the same take-over runs for each partition,
starting from the standby's warm books instead of the snapshots. While idle, each owned
partition commits its offset again in a transaction of its own every few seconds (the
heartbeat), so a fenced instance notices and stops even when no command comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NoReturn

import structlog

from matcher.core import BookSnapshot, OrderBook
from matcher.metrics import MatcherMetrics
from matcher.service import BookDirectory
from matcher.snapshot import BookSnapshots, replay_from
from matcher.standby import WarmPartition
from ordermesh.bus.base import (
    Bus,
    BusError,
    Headers,
    Producer,
    ProducerFencedError,
    Record,
    TopicPartition,
    appends_at_once,
)
from ordermesh.bus.topics import TRACEPARENT_HEADER, partition_for
from ordermesh.codec import CodecError, decode_command, encode_engine_event
from ordermesh.events import OrderCommand
from ordermesh.markets import Market
from ordermesh.model import Side
from ordermesh.runtime import FatalError, FencedError

log = structlog.get_logger(__name__)

_POLL_MS: Final = 200
"""How long one getmany waits for records; bounds how late a stop or a recovery is seen."""

Outgoing = tuple[bytes, bytes, Headers]
"""An engine event ready to send: key, value, headers."""


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """How the loop consumes and publishes."""

    orders_topic: str
    engine_topic: str
    group_id: str
    transactional_id_prefix: str
    snapshot_every: int
    """Commands of one symbol between two snapshots of its book."""
    max_batch: int
    """The most records one getmany returns (over every partition)."""

    def transactional_id(self, partition: int) -> str:
        """The transactional id of one input partition: the same for every owner, so it fences."""
        return f"{self.transactional_id_prefix}-matcher-orders-{partition}"


@dataclass(eq=False, slots=True)
class _Owned:
    """One input partition this instance owns."""

    partition: TopicPartition
    producer: Producer
    books: dict[str, OrderBook]
    live_from: int
    """The group's committed offset at take-over: commands below it are replayed silently."""
    taken_at: float
    since_snapshot: dict[str, int] = field(default_factory=dict)
    recovering: bool = True
    committed: int | None = None
    """The group's committed offset as this owner last saw or committed it (None: never)."""


@dataclass(slots=True)
class _Batch:
    """What one partition's live records produced, before it is sent."""

    outgoing: list[Outgoing] = field(default_factory=list)
    snapshots: list[BookSnapshot] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)


class OrderConsumer:
    """Owns ordermesh.orders partitions through the consumer group and matches them.

    It is the group consumer's rebalance listener. `ready` is True once every partition it
    owns is recovered and no rebalance is under way; `on_change` is awaited whenever that
    may have changed.

    Args:
        bus: the log.
        config: topics, group, transactional ids and batch bounds.
        markets: the markets by symbol; each gets a book in the partition its key maps to.
        snapshots: where books are restored from and saved to.
        directory: told which books serve reads.
        metrics: the service's metrics.
        on_change: awaited when readiness may have changed.
    """

    def __init__(
        self,
        bus: Bus,
        config: LoopConfig,
        *,
        markets: Mapping[str, Market],
        snapshots: BookSnapshots,
        directory: BookDirectory,
        metrics: MatcherMetrics,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self._bus = bus
        self._config = config
        self._markets = markets
        self._snapshots = snapshots
        self._directory = directory
        self._metrics = metrics
        self._on_change = on_change
        self._consumer = bus.consumer(group_id=config.group_id, read_committed=True)
        self._symbols_of: dict[int, list[str]] = {}
        self._owned: dict[TopicPartition, _Owned] = {}
        # Held by a batch from its records to its commit, and by the listener: a rebalance
        # waits for the batch in progress, and a batch never sees a half-done rebalance.
        self._lock = asyncio.Lock()
        self._joined = False
        self._rebalancing = False
        self._batch: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Joined, no rebalance under way, and every owned partition recovered."""
        return (
            self._joined
            and not self._rebalancing
            and not any(owned.recovering for owned in self._owned.values())
        )

    @property
    def symbols_of(self) -> dict[int, list[str]]:
        """The symbols of each orders partition (after `prepare`)."""
        return self._symbols_of

    @property
    def owned_partitions(self) -> list[int]:
        """The input partitions this instance owns now."""
        return sorted(tp.partition for tp in self._owned)

    async def prepare(self) -> None:
        """Map each symbol to its partition of the orders topic (which must exist)."""
        count = await self._bus.partitions(self._config.orders_topic)
        partition_of = {symbol: partition_for(symbol.encode(), count) for symbol in self._markets}
        self._symbols_of = {}
        for symbol, partition in partition_of.items():
            self._symbols_of.setdefault(partition, []).append(symbol)
        self._directory.place(partition_of)

    async def run(self) -> NoReturn:
        """Join the group, then match batches until cancelled or a failure (fail-stop).

        Raises:
            FatalError: a record that does not decode, an unknown or misrouted symbol, a
                fenced producer, or snapshots and offsets that disagree.
            BusError: the bus failed.
        """
        self._consumer.subscribe([self._config.orders_topic], listener=self)
        await self._consumer.start()
        await self._match()

    async def run_owner(
        self,
        warm: Mapping[TopicPartition, WarmPartition],
        record_owner: Callable[[Producer], Awaitable[None]],
    ) -> NoReturn:
        """Own every orders partition by assignment (a hand-over), then match until stopped.

        Each partition is taken over as on a group assignment (its producer first, which
        fences the previous owner), from its warm books when the standby has them. Then
        `record_owner` writes the owner record with the first partition's producer.

        Raises:
            FencedError: another instance took a partition over meanwhile.
            FatalError, BusError: as `run`.
        """
        count = await self._bus.partitions(self._config.orders_topic)
        partitions = [TopicPartition(self._config.orders_topic, p) for p in range(count)]
        self._consumer.assign(partitions)
        await self._consumer.start()
        async with self._lock:
            for tp in partitions:
                self._owned[tp] = await self._take_over(tp, warm.get(tp))
            self._metrics.owned_partitions.set(len(self._owned))
            try:
                await record_owner(self._owned[partitions[0]].producer)
            except ProducerFencedError as e:
                raise FencedError(f"fenced while taking over: {e}") from e
            self._joined = True
        log.info("all partitions owned by assignment", partitions=count)
        await self._on_change()
        await self._match()

    async def heartbeat(self) -> None:
        """Commit each owned partition's offset again, alone: fenced, this stops it.

        Raises:
            FencedError: another instance took a partition over.
        """
        async with self._lock:
            for owned in list(self._owned.values()):
                if owned.recovering or owned.committed is None:
                    continue  # nothing committed yet: nothing to commit again
                producer = owned.producer
                try:
                    await producer.begin_transaction()
                    offsets = {owned.partition: owned.committed}
                    await producer.send_offsets_to_transaction(offsets, self._config.group_id)
                    await producer.commit_transaction()
                except ProducerFencedError as e:
                    raise _fenced(owned.partition) from e

    async def _match(self) -> NoReturn:
        while True:
            records = await self._consumer.getmany(
                timeout_ms=_POLL_MS, max_records=self._config.max_batch
            )
            if not records and all(not owned.recovering for owned in self._owned.values()):
                continue
            self._batch = asyncio.create_task(self._handle(records))
            # Shielded: a stop lets the batch commit; close() waits for it.
            await asyncio.shield(self._batch)

    async def close(self) -> None:
        """Finish the batch in progress, leave the group, stop every producer."""
        batch, self._batch = self._batch, None
        if batch is not None and not batch.done():
            try:
                await batch
            except Exception as e:
                log.error("the batch in progress failed while stopping", error=repr(e))
        try:
            await self._consumer.stop()
        finally:
            for owned in list(self._owned.values()):
                await owned.producer.stop()
            self._owned.clear()

    async def probe(self, within: float) -> bool:
        """Ask the bus for the owned partitions' end offsets; False if no answer `within` seconds.

        Also updates the consumer lag of each owned partition.
        """
        owned = list(self._owned)
        try:
            async with asyncio.timeout(within):
                await self._bus.partitions(self._config.orders_topic)
                ends = await self._consumer.end_offsets(owned) if owned else {}
        except (BusError, TimeoutError) as e:
            log.warning("the bus did not answer a probe", error=repr(e), seconds=within)
            return False
        for tp, end in ends.items():
            if tp in self._owned:
                try:
                    position = await self._consumer.position(tp)
                except BusError:  # revoked meanwhile
                    continue
                self._metrics.consumer_lag.labels(str(tp.partition)).set(max(end - position, 0))
        return True

    # -- rebalance listener ----------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Wait for the batch in progress, then stop each partition's producer, drop its books."""
        self._rebalancing = True
        await self._on_change()
        async with self._lock:
            self._metrics.rebalances.labels("revoked").inc()
            for tp in sorted(revoked):
                owned = self._owned.pop(tp, None)
                if owned is not None:
                    self._directory.withdraw(owned.books)
                    self._metrics.consumer_lag.clear()
                    await owned.producer.stop()
            self._metrics.owned_partitions.set(len(self._owned))
        log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Take each partition over: fence, read the committed offset, restore, seek."""
        async with self._lock:
            self._metrics.rebalances.labels("assigned").inc()
            for tp in sorted(assigned):
                self._owned[tp] = await self._take_over(tp)
            self._metrics.owned_partitions.set(len(self._owned))
            self._joined = True
            self._rebalancing = False
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))
        await self._on_change()

    async def _take_over(self, tp: TopicPartition, warm: WarmPartition | None = None) -> _Owned:
        taken_at = time.perf_counter()
        producer = self._bus.producer(transactional_id=self._config.transactional_id(tp.partition))
        # The producer first: starting it fences the old owner and waits for its last
        # transaction, so the committed offset read after it is final.
        await producer.start()
        try:
            committed = await self._consumer.committed(tp)
            if warm is None:
                restored = await self._snapshots.restore(self._symbols_of.get(tp.partition, ()))
                beginning = (await self._consumer.beginning_offsets([tp]))[tp]
                start = replay_from(tp, restored, committed, beginning, self._config.group_id)
                books, from_snapshot = restored.books, sorted(restored.from_snapshot)
            else:
                # The standby applied only commands below the committed offset of its time.
                books, start, from_snapshot = warm.books, warm.next_offset, []
        except BaseException:
            await producer.stop()
            raise
        self._consumer.seek(tp, start)
        live_from = start if committed is None else committed
        owned = _Owned(tp, producer, books, live_from, taken_at, dict.fromkeys(books, 0))
        owned.committed = committed
        log.info(
            "partition taken over",
            partition=tp.partition,
            committed_offset=committed,
            replay_from=start,
            from_snapshot=from_snapshot,
            warm=warm is not None,
        )
        if start >= live_from:
            self._go_live(owned)
        else:
            self._directory.recovering(owned.books, live_from)
        return owned

    def _go_live(self, owned: _Owned) -> None:
        owned.recovering = False
        self._directory.serve(owned.books)
        seconds = time.perf_counter() - owned.taken_at
        self._metrics.recovery_seconds.labels(str(owned.partition.partition)).set(seconds)
        log.info(
            "partition live",
            partition=owned.partition.partition,
            live_from=owned.live_from,
            seconds=round(seconds, 3),
        )

    # -- batches ---------------------------------------------------------------------------

    async def _handle(self, records: list[Record]) -> None:
        async with self._lock:
            for tp, part in _by_partition(records).items():
                owned = self._owned.get(tp)
                # A rebalance may have run since these records were read (or, on Kafka, while
                # the listener ran): a partition it took away is read by its new owner, and
                # one it sought back (position at or before them) is read again from there.
                if owned is None or part[-1].offset >= await self._consumer.position(tp):
                    log.info(
                        "records of a past assignment dropped",
                        partition=tp.partition,
                        first_offset=part[0].offset,
                        last_offset=part[-1].offset,
                    )
                    continue
                await self._process(owned, part)
            await self._check_recovered()

    async def _process(self, owned: _Owned, records: Sequence[Record]) -> None:
        live_from = owned.live_from
        first_live = next((i for i, r in enumerate(records) if r.offset >= live_from), len(records))
        replayed: dict[str, int] = {}
        for record in records[:first_live]:
            command = self._decode(record)
            self._book_for(owned, command, record).apply(command, record.offset)
            owned.since_snapshot[command.symbol] += 1
            replayed[command.symbol] = replayed.get(command.symbol, 0) + 1
        for symbol, count in replayed.items():
            self._metrics.commands_applied.labels(symbol, "replay").inc(count)
        if first_live < len(records):
            await self._transact(owned, records[first_live:])

    def _apply(self, owned: _Owned, records: Sequence[Record]) -> _Batch:
        """Apply every record (no await: a read never sees half a batch's command)."""
        batch = _Batch()
        every = self._config.snapshot_every
        since = owned.since_snapshot
        for record in records:
            command = self._decode(record)
            symbol = command.symbol
            book = self._book_for(owned, command, record)
            events = book.apply(command, record.offset)
            key = symbol.encode()
            headers = tuple(h for h in record.headers if h[0] == TRACEPARENT_HEADER)
            batch.outgoing.extend((key, encode_engine_event(e), headers) for e in events)
            batch.commands[symbol] = batch.commands.get(symbol, 0) + 1
            batch.events[symbol] = batch.events.get(symbol, 0) + len(events)
            since[symbol] += 1
            if since[symbol] >= every:
                since[symbol] = 0
                batch.snapshots.append(book.snapshot())
        return batch

    async def _transact(self, owned: _Owned, records: Sequence[Record]) -> None:
        batch = self._apply(owned, records)
        producer = owned.producer
        started = time.perf_counter()
        try:
            await producer.begin_transaction()
            await _send_in_order(producer, self._config.engine_topic, batch.outgoing)
            for snapshot in batch.snapshots:
                await self._snapshots.save(snapshot, producer)
            offsets = {owned.partition: records[-1].offset + 1}
            await producer.send_offsets_to_transaction(offsets, self._config.group_id)
            await producer.commit_transaction()
        except ProducerFencedError as e:
            raise _fenced(owned.partition) from e
        owned.committed = records[-1].offset + 1
        self._metrics.transaction_seconds.observe(time.perf_counter() - started)
        for symbol, count in batch.commands.items():
            self._metrics.commands_applied.labels(symbol, "live").inc(count)
            self._metrics.events_emitted.labels(symbol).inc(batch.events[symbol])
            self._observe_book(owned.books[symbol])

    def _observe_book(self, book: OrderBook) -> None:
        symbol = book.symbol
        self._metrics.book_levels.labels(symbol, "buy").set(len(book.depth(Side.BUY)))
        self._metrics.book_levels.labels(symbol, "sell").set(len(book.depth(Side.SELL)))
        self._metrics.book_orders.labels(symbol).set(len(book))

    async def _check_recovered(self) -> None:
        changed = False
        for owned in self._owned.values():
            if (
                owned.recovering
                and await self._consumer.position(owned.partition) >= owned.live_from
            ):
                self._go_live(owned)
                changed = True
        if changed:
            await self._on_change()

    def _decode(self, record: Record) -> OrderCommand:
        try:
            return decode_command(record.value)
        except CodecError as e:
            raise FatalError(
                f"{record.topic}[{record.partition}]@{record.offset} is not an OrderCommand ({e});"
                " the matcher stops rather than skip it"
            ) from e

    def _book_for(self, owned: _Owned, command: OrderCommand, record: Record) -> OrderBook:
        book = owned.books.get(command.symbol)
        if book is not None:
            return book
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if command.symbol in self._markets:
            raise FatalError(
                f"{where}: a {command.symbol} command in a partition {command.symbol} does not"
                " live in: its producer did not key it by symbol"
            )
        raise FatalError(
            f"{where}: a command for {command.symbol!r}, which is not in the markets table"
            f" ({', '.join(self._markets)}): the matcher and its producers disagree on markets"
        )


def _fenced(partition: TopicPartition) -> FencedError:
    return FencedError(
        f"the producer of {partition} was fenced: another matcher instance owns that"
        " partition now, so this one is a zombie and stops"
    )


def _by_partition(records: list[Record]) -> dict[TopicPartition, list[Record]]:
    grouped: dict[TopicPartition, list[Record]] = {}
    for record in records:
        grouped.setdefault(record.topic_partition, []).append(record)
    return grouped


async def _send_in_order(producer: Producer, topic: str, outgoing: list[Outgoing]) -> None:
    """Send every record, in order, without waiting for each acknowledgement in turn.

    The first send is awaited alone (it warms the producer's metadata, so the rest enqueue
    at once, in call order); the rest are in flight together. The offsets the log gave are
    then checked: should it ever have taken them out of order, this raises before the
    transaction commits, so nothing out of order becomes visible. A producer that appends at
    once (the in-memory bus) is sent to one record after the other, which is the same,
    without a task per record.

    Raises:
        FatalError: the log acknowledged records of one partition out of order.
        BusError: a send failed.
    """
    if not outgoing:
        return
    key, value, headers = outgoing[0]
    first = await producer.send(topic, value, key=key, headers=headers)
    results: list[Record | BaseException]
    if appends_at_once(producer):  # each send returns at once: in a row is the same order
        results = [await producer.send(topic, v, key=k, headers=h) for k, v, h in outgoing[1:]]
    else:
        results = await asyncio.gather(
            *(producer.send(topic, v, key=k, headers=h) for k, v, h in outgoing[1:]),
            return_exceptions=True,
        )
    last = {first.partition: first.offset}
    for result in results:
        if isinstance(result, BaseException):
            raise result
        if result.offset <= last.get(result.partition, -1):
            raise FatalError(
                f"{topic}[{result.partition}] took an engine event at offset {result.offset},"
                f" after one at {last[result.partition]}: events out of order; not committing"
            )
        last[result.partition] = result.offset
