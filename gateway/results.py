"""The engine tail: the matcher's answers, for PlaceOrder and CancelOrder with RESULT.

One consumer, assigned to every partition of ordermesh.engine (no group: every gateway
replica reads all of it), reading committed records only, from the end offsets taken when
the gateway starts. Starting at the end is safe here, unlike for a state-bearing consumer
(DESIGN §11), because the tail holds no state that outlives a call: a caller that wants an
answer registers a waiter BEFORE it sends its Reserve or Cancel to ubscore, keyed by
(account, client_order_id) and then by order_id, and the matcher can only answer a command
after ubscore logged it. Any event before the gateway started answers a command sent before
then, which no waiter of this gateway can be waiting for.

Records are decoded strictly: a record that is not an EngineEvent, or events that break the
hash chain, raise and stop the gateway (fail-stop under the Supervisor) rather than being
skipped. Events are assembled into command groups (`gateway.outcomes`) and each complete
group is handed to the waiters it concerns, then to the listeners (the live streams'
fan-out, `gateway.stream_hub`), which are told too when the tail stops. A short memory of
recent groups and of how recent orders ended answers retries (a resent client_order_id)
and cancels that lost a race.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final, Generic, NoReturn, Protocol, TypeVar

import structlog

from gateway.outcomes import CommandGroup, CommandGroups, GroupKind, done_statuses
from ordermesh.bus.base import Bus, Consumer, TopicPartition, UnknownTopicError
from ordermesh.codec import CodecError, decode_engine_event
from ordermesh.model import AccountId, ClientOrderId, OrderId, OrdermeshError, OrderStatus
from ordermesh.model import RejectReason as R
from ordermesh.runtime import FatalError

log = structlog.get_logger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")
_FETCH_MS: Final = 100
_MAX_RECORDS: Final = 1000
_TOPIC_RETRY_SECONDS: Final = 0.5

WaiterKey = tuple[AccountId, str, int | str]
"""(account, "order" or "client", the order_id or client_order_id)."""


class _Recent(Generic[_K, _V]):
    """A mapping that forgets its oldest entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, key: _K) -> _V | None:
        return self._items.get(key)


class TailListener(Protocol):
    """Takes every complete command group the tail reads, and hears when the tail stops."""

    def group(self, group: CommandGroup) -> None:
        """One complete group, in log order per symbol; must not wait or raise."""

    def stopped(self, error: BaseException | None) -> None:
        """The tail stopped reading: with `error`, or None when it was closed or cancelled."""


class Waiter:
    """Collects the command groups delivered to one caller until the one it wants arrives."""

    def __init__(self) -> None:
        self._groups: list[CommandGroup] = []
        self._arrived = asyncio.Event()

    def deliver(self, group: CommandGroup) -> None:
        """Called by the tail with a group about the waiter's order."""
        self._groups.append(group)
        self._arrived.set()

    async def wait_for(
        self, wanted: Callable[[CommandGroup], bool], seconds: float
    ) -> CommandGroup | None:
        """The first delivered group that is `wanted`, or None after `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            for group in self._groups:
                if wanted(group):
                    return group
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()


def about(order_id: int) -> Callable[[CommandGroup], bool]:
    """A `Waiter.wait_for` test: the group is about order `order_id`."""
    return lambda group: group.subject[1] == order_id


class EngineTail:
    """Reads ordermesh.engine from the end and routes each command's events to its waiters.

    Args:
        bus: the log.
        topic: the engine topic (with the mesh's prefix).
        recent: how many recent order groups and endings are remembered.
    """

    def __init__(self, bus: Bus, topic: str, *, recent: int = 4096) -> None:
        self.topic = topic
        self._bus = bus
        self._consumer: Consumer | None = None
        self._groups = CommandGroups()
        self._placing: dict[WaiterKey, list[Waiter]] = {}
        self._canceling: dict[WaiterKey, list[Waiter]] = {}
        self._recent: _Recent[int, CommandGroup] = _Recent(recent)
        self._ended: _Recent[int, OrderStatus] = _Recent(recent * 16)
        self.positioned = False
        """True once the tail reads from the end offsets taken at start."""
        self.events_read = 0
        """Engine events read since start."""
        self._listeners: list[TailListener] = []

    def listen(self, listener: TailListener) -> None:
        """Hand every group read from now on to `listener`, and tell it when the tail stops."""
        self._listeners.append(listener)

    def _stopped(self, error: BaseException | None) -> None:
        for listener in self._listeners:
            listener.stopped(error)

    async def start(self) -> None:
        """Position at the end of every partition; a topic not there yet is retried by run().

        Raises:
            BusError: the bus cannot be reached.
        """
        with contextlib.suppress(UnknownTopicError):
            await self._position()

    async def _position(self) -> None:
        partitions = [
            TopicPartition(self.topic, index)
            for index in range(await self._bus.partitions(self.topic))
        ]
        consumer = self._bus.consumer(read_committed=True)
        consumer.assign(partitions)
        await consumer.start()
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            consumer.seek(partition, ends[partition])
        self._consumer = consumer
        self.positioned = True
        log.info("engine tail positioned", topic=self.topic, offsets=list(ends.values()))

    async def run(self) -> NoReturn:
        """Read and route until cancelled; the listeners hear how it ended.

        Raises:
            FatalError: a record that is not an engine event, or a broken hash chain.
        """
        try:
            await self._read()
        except asyncio.CancelledError:
            self._stopped(None)
            raise
        except BaseException as e:
            self._stopped(e)
            raise

    async def _read(self) -> NoReturn:
        while self._consumer is None:
            try:
                await self._position()
            except UnknownTopicError:
                log.info("waiting for the engine topic", topic=self.topic)
                await asyncio.sleep(_TOPIC_RETRY_SECONDS)  # polls for a topic to be created
        consumer = self._consumer
        while True:
            records = await consumer.getmany(timeout_ms=_FETCH_MS, max_records=_MAX_RECORDS)
            for record in records:
                try:
                    event = decode_engine_event(record.value)
                    completed = self._groups.add(event, record.partition)
                except (CodecError, ValueError) as e:
                    raise FatalError(
                        f"{record.topic} partition {record.partition} offset {record.offset}: "
                        f"{e}; the gateway stops rather than skip it"
                    ) from e
                self.events_read += 1
                for group in completed:
                    self._route(group)
            if self._groups.open_partitions():
                await self._flush_read_partitions(consumer)

    async def _flush_read_partitions(self, consumer: Consumer) -> None:
        """Complete first groups in partitions read to their end (see gateway.outcomes)."""
        partitions = [TopicPartition(self.topic, p) for p in self._groups.open_partitions()]
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            if await consumer.position(partition) >= ends[partition]:
                for group in self._groups.flush(partition.partition):
                    self._route(group)

    def _route(self, group: CommandGroup) -> None:
        for order_id, status in done_statuses(group):
            self._ended.put(order_id, status)
        account, order_id, client_order_id = group.subject
        keys: list[WaiterKey] = [(account, "order", order_id)]
        if client_order_id:
            keys.append((account, "client", client_order_id))
        if group.kind is GroupKind.NEW_ORDER:
            self._recent.put(order_id, group)
            waiting = self._placing
        else:
            waiting = self._canceling
        for key in keys:
            for waiter in waiting.get(key, ()):
                waiter.deliver(group)
        for listener in self._listeners:
            listener.group(group)

    def require_positioned(self) -> None:
        """Raise UNAVAILABLE unless the tail is reading (a RESULT could not be answered)."""
        if not self.positioned:
            raise OrdermeshError(
                R.UNAVAILABLE,
                "the gateway is starting and cannot follow the matcher's answers yet; retry"
                " shortly, or ask for response_type ACK",
            )

    @contextlib.contextmanager
    def placing(self, account: AccountId, client_order_id: ClientOrderId) -> Iterator[Waiter]:
        """A waiter for the group of the NewOrder (account, client_order_id).

        Register it before the Reserve call; wait on it after.
        """
        with _registered(self._placing, (account, "client", client_order_id)) as waiter:
            yield waiter

    @contextlib.contextmanager
    def canceling(
        self, account: AccountId, order_id: OrderId, client_order_id: ClientOrderId
    ) -> Iterator[Waiter]:
        """A waiter for the group of a cancel of the order named by id, else client id."""
        key: WaiterKey = (
            (account, "order", order_id) if order_id else (account, "client", client_order_id)
        )
        with _registered(self._canceling, key) as waiter:
            yield waiter

    def recent(self, order_id: int) -> CommandGroup | None:
        """The group of a recent NewOrder, if the tail read it and still remembers it."""
        return self._recent.get(order_id)

    def ended(self, order_id: int) -> OrderStatus | None:
        """How a recent order ended, if the tail read its OrderDone and still remembers it."""
        return self._ended.get(order_id)

    async def close(self) -> None:
        """Stop the consumer."""
        consumer, self._consumer = self._consumer, None
        self.positioned = False
        self._stopped(None)
        if consumer is not None:
            await consumer.stop()


@contextlib.contextmanager
def _registered(table: dict[WaiterKey, list[Waiter]], key: WaiterKey) -> Iterator[Waiter]:
    waiter = Waiter()
    table.setdefault(key, []).append(waiter)
    try:
        yield waiter
    finally:
        waiters = table[key]
        waiters.remove(waiter)
        if not waiters:
            del table[key]
