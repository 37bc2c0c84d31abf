"""The bus over Apache Kafka (aiokafka): idempotent acks=all producers, read_committed reads.

aiokafka's errors are translated here, at the boundary, into the bus errors of
`ordermesh.bus.base`. aiokafka objects need a running event loop, so producers and
consumers build theirs in `start()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ConsumerStoppedError,
    IllegalOperation,
    InvalidProducerEpoch,
    KafkaError,
    MessageSizeTooLargeError,
    NoOffsetForPartitionError,
    ProducerFenced,
    TopicAlreadyExistsError,
    for_code,
)

from ordermesh.bus.base import (
    BusError,
    Headers,
    NoCommittedOffsetError,
    OffsetReset,
    ProduceOutcomeUnknownError,
    ProducerFencedError,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    UnknownTopicError,
)

_FENCED = (ProducerFenced, InvalidProducerEpoch)
_FAILED_STOP_SECONDS = 2.0
"""How long a fenced or failed producer's stop may wait for aiokafka to close."""
_CLIENT_ERRORS = (KafkaError, IllegalOperation, ConsumerStoppedError)


def _theirs(tp: TopicPartition) -> Any:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _ours(partitions: Any) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in partitions)


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=b"" if message.value is None else message.value,
        headers=tuple((name, bytes(value)) for name, value in message.headers),
        timestamp_ms=message.timestamp,
    )


class KafkaBus:
    """Kafka as the bus; every client it makes shares these settings.

    Args:
        bootstrap_servers: "host:port[,host:port...]" of the cluster.
        client_id: Names this process's connections in the brokers' logs.
        replication_factor: Replicas of each topic it creates (3 in production).
        request_timeout_ms: Bound on one request to a broker.
        delivery_timeout_ms: Bound on a send, a transaction start, commit or abort; past
            it the outcome is unknown (ProduceOutcomeUnknownError).
        session_timeout_ms: A group member silent this long is removed (broker minimum 6 s).
        heartbeat_interval_ms: How often members heartbeat; a rebalance is noticed within it.
        fetch_max_wait_ms: How long a broker may hold an empty fetch.
        transaction_timeout_ms: An open transaction of a dead producer aborts after this.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "ordermesh",
        replication_factor: int = 1,
        request_timeout_ms: int = 30_000,
        delivery_timeout_ms: int = 30_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 500,
        fetch_max_wait_ms: int = 100,
        transaction_timeout_ms: int = 60_000,
    ) -> None:
        common = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer_options = {
            **common,
            "acks": "all",
            "enable_idempotence": True,
            "transaction_timeout_ms": transaction_timeout_ms,
        }
        self._consumer_options = {
            **common,
            "enable_auto_commit": False,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "fetch_max_wait_ms": fetch_max_wait_ms,
        }
        self._admin_options = common
        self._replication_factor = replication_factor
        self._delivery_timeout = delivery_timeout_ms / 1000
        self._admin: Any = None

    def producer(self, *, transactional_id: str | None = None) -> KafkaProducer:
        """A producer, transactional when `transactional_id` is given (not started)."""
        options = dict(self._producer_options, transactional_id=transactional_id)
        return KafkaProducer(self, options, transactional_id, self._delivery_timeout)

    def consumer(
        self,
        *,
        group_id: str | None = None,
        read_committed: bool = True,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> KafkaConsumer:
        """A consumer (not started); `group_id` for subscriptions and committed offsets."""
        options = dict(
            self._consumer_options,
            group_id=group_id,
            auto_offset_reset=auto_offset_reset,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )
        return KafkaConsumer(self, options, group_id, auto_offset_reset)

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet and wait until every partition has a leader.

        Raises:
            BusError: A topic exists with another partition count, or the broker refused it.
        """
        admin = await self._admin_client()
        new = [
            NewTopic(
                spec.name,
                spec.partitions,
                self._replication_factor,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
            )
            for spec in specs
        ]
        try:
            response = await admin.create_topics(new)
        except KafkaError as exc:
            raise BusError(f"create topics {[s.name for s in specs]}: {exc!r}") from exc
        wanted = {spec.name: spec.partitions for spec in specs}
        for name, code, *details in response.topic_errors:
            if code == TopicAlreadyExistsError.errno:
                existing = await self.partitions(name)
                if existing != wanted[name]:
                    raise BusError(
                        f"topic {name!r} exists with {existing} partitions,"
                        f" asked for {wanted[name]}"
                    )
            elif code != 0:
                raise BusError(f"create topic {name!r}: {for_code(code).__name__} {details}")
        await self._await_leaders(wanted)

    async def _await_leaders(self, wanted: Mapping[str, int]) -> None:
        try:
            async with asyncio.timeout(self._delivery_timeout):
                # Leadership is remote state with no notification to wait on: poll it.
                while not await self._all_led(wanted):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError as exc:
            raise BusError(f"topics {sorted(wanted)} have partitions with no leader") from exc

    async def _all_led(self, wanted: Mapping[str, int]) -> bool:
        described = await (await self._admin_client()).describe_topics(list(wanted))
        for topic in described:
            leaders = [p["leader"] for p in topic["partitions"] if p["error_code"] == 0]
            if topic["error_code"] or len(leaders) != wanted[topic["topic"]] or min(leaders) < 0:
                return False
        return True

    async def partitions(self, topic: str) -> int:
        """How many partitions `topic` has; UnknownTopicError if it does not exist."""
        admin = await self._admin_client()
        try:
            # Listing first: a metadata request naming a missing topic may create it.
            if topic not in await admin.list_topics():
                raise UnknownTopicError(f"topic {topic!r} does not exist")
            (described,) = await admin.describe_topics([topic])
        except KafkaError as exc:
            raise BusError(f"describe topic {topic!r}: {exc!r}") from exc
        if described["error_code"]:
            raise BusError(f"describe topic {topic!r}: error code {described['error_code']}")
        return len(described["partitions"])

    async def close(self) -> None:
        """Close the admin connection; producers and consumers are stopped by their owners."""
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    async def _admin_client(self) -> Any:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._admin_options)
            try:
                await admin.start()
            except KafkaError as exc:
                await admin.close()
                raise BusError(f"connect admin client: {exc!r}") from exc
            self._admin = admin
        return self._admin


class KafkaProducer:
    """An idempotent, acks=all aiokafka producer; transactional with a transactional id."""

    def __init__(
        self, bus: KafkaBus, options: dict[str, Any], transactional_id: str | None, timeout: float
    ) -> None:
        self._bus = bus
        self._options = options
        self._transactional_id = transactional_id
        self._timeout = timeout
        self._producer: Any = None
        self._failure: BusError | None = None
        self._in_transaction = False
        self._offsets_sent = False
        self._partition_counts: dict[str, int] = {}
        # Held while a record is appended to aiokafka's batches (not while it is in flight),
        # so concurrent sends reach the log in the order send() was called, as in memory.
        self._append = asyncio.Lock()

    async def start(self) -> None:
        """Connect; with a transactional id, fence older producers (their transaction aborts)."""
        producer = AIOKafkaProducer(**self._options)
        try:
            async with asyncio.timeout(self._timeout):
                await producer.start()
        except (TimeoutError, KafkaError) as exc:
            await producer.stop()
            raise BusError(f"start producer {self._transactional_id!r}: {exc!r}") from exc
        self._producer = producer

    async def stop(self) -> None:
        """Abort a transaction still open (unless fenced), flush and disconnect."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._in_transaction and self._failure is None:
            # Best effort: if this fails, the next producer with the id aborts it.
            with contextlib.suppress(TimeoutError, KafkaError):
                async with asyncio.timeout(self._timeout):
                    await producer.abort_transaction()
        if self._failure is None:
            await producer.stop()
            return
        # Fenced or failed: aiokafka's stop would wait for batches still queued, which can
        # never be delivered (or no longer matter): give it a moment, not the delivery timeout.
        with contextlib.suppress(TimeoutError, KafkaError):
            async with asyncio.timeout(_FAILED_STOP_SECONDS):
                await producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Record:
        """Append a record and wait for the acknowledgement of all in-sync replicas.

        Records of concurrent calls are appended in the order of the calls.

        Raises:
            ProduceOutcomeUnknownError: No acknowledgement in time, or a broker error.
            ProducerFencedError: A newer producer took over this transactional id.
            UnknownTopicError: No such topic or partition.
        """
        producer = self._running()
        async with self._append:
            await self._check_partition(topic, partition)
            if self._transactional_id is not None and not self._in_transaction:
                raise BusError(f"producer {self._transactional_id!r} sends outside a transaction")
            append = producer.send(
                topic, value, key=key, partition=partition, headers=list(headers)
            )
            delivery = await self._delivered(append, topic, key)
        metadata = await self._delivered(delivery, topic, key)
        stamp = max(metadata.timestamp or 0, 0)
        return Record(topic, metadata.partition, metadata.offset, key, value, tuple(headers), stamp)

    async def _delivered(self, step: Awaitable[Any], topic: str, key: bytes | None) -> Any:
        """Await one step of a send within the timeout, mapping aiokafka's errors."""
        try:
            async with asyncio.timeout(self._timeout):
                return await step
        except _FENCED as exc:
            self._fenced(exc)
        except MessageSizeTooLargeError as exc:  # refused before anything was sent
            raise BusError(f"record for {topic!r} (key {key!r}) is too large: {exc}") from exc
        except (TimeoutError, KafkaError) as exc:
            self._failure = ProduceOutcomeUnknownError(
                f"send to {topic!r} (key {key!r}): no acknowledgement ({exc!r})"
            )
            raise self._failure from exc

    async def _check_partition(self, topic: str, partition: int | None) -> None:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = await self._bus.partitions(topic)
        if partition is not None and not 0 <= partition < count:
            raise UnknownTopicError(
                f"topic {topic!r} has {count} partitions, asked for {partition}"
            )

    async def begin_transaction(self) -> None:
        """Start a transaction: what is sent until commit is invisible to read_committed."""
        producer = self._running()
        if self._transactional_id is None:
            raise BusError("begin_transaction needs a producer with a transactional id")
        if self._in_transaction:
            raise BusError(f"producer {self._transactional_id!r} already has an open transaction")
        await self._call(producer.begin_transaction(), "begin transaction", BusError)
        self._in_transaction, self._offsets_sent = True, False

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], group_id: str
    ) -> None:
        """Commit `group_id`'s offsets with the open transaction (once per transaction)."""
        producer = self._in_open_transaction()
        if self._offsets_sent:
            raise BusError("send_offsets_to_transaction may be called once per transaction")
        self._offsets_sent = True
        if offsets:  # aiokafka would wait forever on an empty offset commit
            theirs = {_theirs(tp): offset for tp, offset in offsets.items()}
            coroutine = producer.send_offsets_to_transaction(theirs, group_id)
            await self._call(coroutine, f"send offsets of group {group_id!r}", BusError)

    async def commit_transaction(self) -> None:
        """Make the transaction's records and offsets visible, atomically.

        Raises:
            ProduceOutcomeUnknownError: The commit may or may not have happened.
            ProducerFencedError: A newer producer took over; the transaction is aborted.
        """
        producer = self._in_open_transaction()
        coroutine = producer.commit_transaction()
        await self._call(coroutine, "commit transaction", ProduceOutcomeUnknownError)
        self._in_transaction = False

    async def abort_transaction(self) -> None:
        """Discard the transaction's records and offsets."""
        producer = self._in_open_transaction()
        await self._call(producer.abort_transaction(), "abort transaction", BusError)
        self._in_transaction = False

    async def _call(self, coroutine: Awaitable[Any], what: str, error: type[BusError]) -> None:
        """Await an aiokafka transaction step within the delivery timeout, mapping errors."""
        try:
            async with asyncio.timeout(self._timeout):
                await coroutine
        except _FENCED as exc:
            self._fenced(exc)
        except (TimeoutError, KafkaError, IllegalOperation) as exc:
            self._failure = error(f"{what} of {self._transactional_id!r}: {exc!r}")
            raise self._failure from exc

    def _fenced(self, cause: Exception) -> NoReturn:
        self._failure = ProducerFencedError(
            f"producer {self._transactional_id!r} was fenced by a newer producer"
            " with the same transactional id"
        )
        raise self._failure from cause

    def _in_open_transaction(self) -> Any:
        producer = self._running()
        if not self._in_transaction:
            raise BusError(f"producer {self._transactional_id!r} has no open transaction")
        return producer

    def _running(self) -> Any:
        if self._failure is not None:
            raise type(self._failure)(str(self._failure)) from self._failure
        if self._producer is None:
            raise BusError("producer is not started")
        return self._producer


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's listener interface, forwarding our TopicPartitions to the consumer."""

    def __init__(
        self,
        revoked: Callable[[frozenset[TopicPartition]], Awaitable[None]],
        assigned: Callable[[frozenset[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._revoked(_ours(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._assigned(_ours(assigned))


class KafkaConsumer:
    """An aiokafka consumer without auto-commit; read_committed unless asked otherwise."""

    def __init__(
        self, bus: KafkaBus, options: dict[str, Any], group_id: str | None, reset: OffsetReset
    ) -> None:
        self._bus = bus
        self._options = options
        self._group_id = group_id
        self._reset = reset
        self._consumer: Any = None
        self._topics: tuple[str, ...] = ()
        self._partitions: tuple[TopicPartition, ...] = ()
        self._listener: RebalanceListener | None = None
        self._adapter = _Listener(self._on_revoked, self._on_assigned)
        self._unchecked: set[str] = set()
        self._sought: set[TopicPartition] = set()
        self._failure: Exception | None = None
        self._stopping = False
        # Cleared from a rebalance's start until on_partitions_assigned returned: aiokafka
        # resumes fetching before it calls the listener, so getmany holds records back.
        self._settled = asyncio.Event()
        self._settled.set()
        # Counts rebalances: a fetch that was in flight across one may hold records read
        # from before on_partitions_assigned's seeks, so its batch is dropped and re-read
        # from `_marks`, the positions the partitions had once the rebalance settled.
        self._generation = 0
        self._marks: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Connect; a subscribed consumer joins its group and returns with its first share."""
        if self._consumer is not None:
            raise BusError("consumer is already started")
        await self._check_topics()
        self._consumer = consumer = AIOKafkaConsumer(**self._options)
        self._apply(consumer)
        try:
            await consumer.start()
        except KafkaError as exc:
            self._consumer = None
            await consumer.stop()
            raise BusError(f"start consumer of group {self._group_id!r}: {exc!r}") from exc
        await self._settled.wait()

    async def stop(self) -> None:
        """Revoke this consumer's partitions (listener first), leave the group, disconnect."""
        consumer = self._consumer
        if consumer is None:
            return
        self._stopping = True
        revoked = self.assignment()
        if self._listener is not None and self._topics and revoked:
            await self._guard(self._listener.on_partitions_revoked(revoked))
        self._consumer = None
        await consumer.stop()
        self._stopping = False
        self._raise_failure()

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None) -> None:
        """Join the consumer group for `topics` (at start, or at once when started)."""
        if self._group_id is None:
            raise BusError("subscribe needs a consumer with a group_id")
        if self._partitions:
            raise BusError("consumer has assigned partitions; it cannot also subscribe")
        if not topics:
            raise BusError("subscribe needs at least one topic")
        self._topics, self._listener = tuple(topics), listener
        self._unchecked.update(topics)
        self._settled.clear()
        if self._consumer is not None:
            self._apply(self._consumer)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions from their committed offsets, with no group management."""
        if self._topics:
            raise BusError("consumer is subscribed; it cannot also assign partitions")
        self._partitions = tuple(partitions)
        self._unchecked.update(tp.topic for tp in partitions)
        self._sought.clear()
        if self._consumer is not None:
            self._apply(self._consumer)

    def _apply(self, consumer: Any) -> None:
        if self._topics:
            consumer.subscribe(list(self._topics), listener=self._adapter)
        elif self._partitions:
            consumer.assign([_theirs(tp) for tp in self._partitions])

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer reads now."""
        return frozenset() if self._consumer is None else _ours(self._consumer.assignment())

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` on."""
        consumer = self._running()
        self._assigned(partition)
        if offset < 0:
            raise BusError(f"seek offset must be >= 0, was {offset} for {partition}")
        consumer.seek(_theirs(partition), offset)
        self._sought.add(partition)

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer will read from `partition`."""
        consumer = self._running()
        await self._check_topics()
        self._assigned(partition)
        # aiokafka's position() waits forever for an offset that reset="none" cannot give.
        if self._reset == "none" and partition not in self._sought:
            committed = await self.committed(partition) if self._group_id is not None else None
            if committed is None:
                raise self._no_offset(partition)
        position: int = await self._mapped(consumer.position(_theirs(partition)), "position")
        return position

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> list[Record]:
        """Records from the assigned partitions, in offset order within each partition.

        Waits up to `timeout_ms` for at least one record; returns [] on time out.

        Raises:
            NoCommittedOffsetError: auto_offset_reset="none" and nothing committed.
            UnknownTopicError: An assigned or subscribed topic does not exist.
            BusError: Not started, or a rebalance listener failed (the error is the cause).
        """
        consumer = self._running()
        await self._check_topics()
        self._raise_failure()
        if max_records is not None and max_records < 1:
            raise BusError(f"max_records must be >= 1, was {max_records}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        try:
            async with asyncio.timeout_at(deadline):
                await self._settled.wait()
        except TimeoutError:
            return []
        remaining_ms = max(int((deadline - loop.time()) * 1000), 0)
        generation = self._generation
        batches = await self._mapped(
            consumer.getmany(timeout_ms=remaining_ms, max_records=max_records), "getmany"
        )
        if generation != self._generation or not self._settled.is_set():
            return await self._refetch(batches)
        return [_record(message) for tp in sorted(batches) for message in batches[tp]]

    async def _refetch(self, batches: Mapping[Any, Sequence[Any]]) -> list[Record]:
        """Drop a batch fetched across a rebalance; the next getmany re-reads it.

        aiokafka advanced its positions past the dropped records, so each partition is put
        back where it stood when the rebalance settled (after the listener's own seeks). A
        rebalance still in progress sets the positions itself when it settles.
        """
        self._raise_failure()
        if self._settled.is_set():
            for tp in batches:
                ours = TopicPartition(tp.topic, tp.partition)
                if ours in self._marks and ours in self.assignment():
                    self._consumer.seek(tp, self._marks[ours])
        return []

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Store the group's offsets (the next offset to read); the current positions if None."""
        consumer = self._running()
        self._require_group()
        theirs = None
        if offsets is not None:
            for tp, offset in offsets.items():
                self._assigned(tp)
                if offset < 0:
                    raise BusError(f"committed offset must be >= 0, was {offset} for {tp}")
            theirs = {_theirs(tp): offset for tp, offset in offsets.items()}
        await self._mapped(consumer.commit(theirs), "commit")

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset for `partition`, or None."""
        consumer = self._running()
        self._require_group()
        offset: int | None = await self._mapped(consumer.committed(_theirs(partition)), "committed")
        return offset

    async def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset still in each partition."""
        return await self._offsets(partitions, "beginning_offsets")

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record of each partition will get (read_committed: the LSO)."""
        return await self._offsets(partitions, "end_offsets")

    async def _offsets(
        self, partitions: Sequence[TopicPartition], method: str
    ) -> dict[TopicPartition, int]:
        consumer = self._running()
        for topic in {tp.topic for tp in partitions}:
            # aiokafka waits forever on a partition that does not exist.
            count = await self._bus.partitions(topic)
            for tp in partitions:
                if tp.topic == topic and not 0 <= tp.partition < count:
                    raise UnknownTopicError(f"topic {topic!r} has {count} partitions, not {tp}")
        request = getattr(consumer, method)([_theirs(tp) for tp in partitions])
        found = await self._mapped(request, method)
        return {TopicPartition(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def _mapped(self, request: Awaitable[Any], what: str) -> Any:
        try:
            return await request
        except NoOffsetForPartitionError as exc:
            raise self._no_offset(exc.args[0] if exc.args else None) from exc
        except _CLIENT_ERRORS as exc:
            raise BusError(f"{what} (group {self._group_id!r}): {exc!r}") from exc

    def _no_offset(self, partition: object) -> NoCommittedOffsetError:
        return NoCommittedOffsetError(
            f"group {self._group_id!r} has no committed offset for {partition}"
            " and auto_offset_reset is 'none'"
        )

    async def _check_topics(self) -> None:
        for topic in sorted(self._unchecked):
            count = await self._bus.partitions(topic)
            for tp in self._partitions:
                if tp.topic == topic and not 0 <= tp.partition < count:
                    raise UnknownTopicError(f"topic {topic!r} has {count} partitions, not {tp}")
            self._unchecked.discard(topic)

    async def _on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self._generation += 1
        self._settled.clear()
        if self._listener is not None and partitions and not self._stopping:
            await self._guard(self._listener.on_partitions_revoked(partitions))

    async def _on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self._generation += 1
        self._sought.clear()
        if self._listener is not None and not self._stopping:
            await self._guard(self._listener.on_partitions_assigned(partitions))
        self._marks = {}
        for partition in sorted(partitions):
            try:
                self._marks[partition] = await self.position(partition)
            except NoCommittedOffsetError:
                continue  # getmany raises it for this partition; nothing to re-read
            except BusError as exc:  # raised from the next getmany, like a listener's failure
                self._failure = self._failure or exc
        self._settled.set()

    async def _guard(self, callback: Awaitable[None]) -> None:
        # aiokafka logs and drops listener errors; keep the first for the next getmany.
        try:
            await callback
        except Exception as exc:
            self._failure = self._failure or exc

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise BusError(f"rebalance listener failed: {failure!r}") from failure

    def _assigned(self, partition: TopicPartition) -> None:
        if partition not in self.assignment():
            raise BusError(f"partition {partition} is not assigned to this consumer")

    def _require_group(self) -> None:
        if self._group_id is None:
            raise BusError("committed offsets need a consumer with a group_id")

    def _running(self) -> Any:
        if self._consumer is None:
            raise BusError("consumer is not started")
        return self._consumer
