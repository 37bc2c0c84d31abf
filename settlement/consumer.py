"""The batch loop: read the three topics, plan in the core, commit each batch once.

One consumer with manually assigned partitions (every partition of ordermesh.orders,
.engine and .ledger) starts from the offsets stored in PostgreSQL, or from offset 0 of a
partition never read; never from "latest" (DESIGN §11), and with no offset reset (a stored
offset the log no longer has is an error, not a silent skip). Each batch is decoded
strictly, planned by `settlement.core.plan_batch`, and written with its next offsets in one
transaction. Anything settlement must not go past (a record that does not decode, a broken
chain, an inconsistent order) raises `FatalError`: the service stops, nothing of the batch
is written, and a restart meets the same record again.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import structlog

from ordermesh.bus import topics
from ordermesh.bus.base import Bus, Consumer, Record, TopicPartition
from ordermesh.codec import CodecError, decode_command, decode_engine_event, decode_ledger_event
from ordermesh.markets import MarketTable
from ordermesh.runtime import FatalError
from settlement.core import (
    BatchError,
    BatchPlan,
    ChainBreakError,
    ChainPoint,
    LogItem,
    OrderConflictError,
    Source,
    fold_orders,
    order_ids,
    plan_batch,
)
from settlement.metrics import SettlementMetrics
from settlement.store import Offsets, Store

log = structlog.get_logger(__name__)

TOPIC_PREFIX: Final = re.compile(r"[A-Za-z0-9._-]{0,200}")
_DECODERS: Final[Mapping[Source, Callable[[bytes], Any]]] = {
    Source.ORDERS: decode_command,
    Source.ENGINE: decode_engine_event,
    Source.LEDGER: decode_ledger_event,
}
_IDLE_POLL_MS: Final = 500
_LAG_PROBE_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class SettlementTopics:
    """The topics settlement reads, as named on the bus."""

    orders: str = topics.ORDERS
    engine: str = topics.ENGINE
    ledger: str = topics.LEDGER

    @classmethod
    def with_prefix(cls, prefix: str) -> SettlementTopics:
        """Every topic name with `prefix` in front (meshes sharing one cluster).

        Raises:
            ValueError: the prefix holds characters Kafka refuses in a topic name.
        """
        if TOPIC_PREFIX.fullmatch(prefix) is None:
            raise ValueError(
                f"topic prefix may hold up to 200 of A-Z a-z 0-9 . _ -, was {prefix!r}"
            )
        return cls(prefix + topics.ORDERS, prefix + topics.ENGINE, prefix + topics.LEDGER)

    def topic(self, source: Source) -> str:
        """The bus topic of a source."""
        return {Source.ORDERS: self.orders, Source.ENGINE: self.engine, Source.LEDGER: self.ledger}[
            source
        ]

    def source(self, topic: str) -> Source:
        """The source a bus topic is."""
        for source in Source:
            if self.topic(source) == topic:
                return source
        raise ValueError(f"{topic!r} is none of settlement's topics")


class BatchConsumer:
    """Reads, plans and commits batches until cancelled or something fatal happens.

    Args:
        bus: the log.
        topic_names: the topics to read.
        store: the write side of PostgreSQL.
        markets: the market table (symbols and assets the events may name).
        metrics: where batches are counted.
        batch_max: the most records one batch takes.
        batch_wait_ms: once a record is in, how long a batch may wait to fill up.
    """

    def __init__(
        self,
        bus: Bus,
        topic_names: SettlementTopics,
        store: Store,
        markets: MarketTable,
        metrics: SettlementMetrics,
        *,
        batch_max: int,
        batch_wait_ms: int,
    ) -> None:
        self._bus = bus
        self._topics = topic_names
        self._sources = {topic_names.topic(source): source for source in Source}
        self._store = store
        self._markets = {str(symbol): market for symbol, market in markets.markets.items()}
        self._assets = frozenset(markets.assets)
        self._metrics = metrics
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self._consumer: Consumer | None = None
        self._partitions: list[TopicPartition] = []
        self._committed: Offsets = {}
        self._chains: dict[str, ChainPoint] = {}
        self._carry: list[LogItem] = []
        self._next_lag_probe = 0.0

    @property
    def committed(self) -> Offsets:
        """The next offset to read per (topic, partition), as last committed."""
        return dict(self._committed)

    async def start(self) -> None:
        """Load the stored position, assign every partition and seek to it."""
        state = await self._store.load_state()
        self._committed, self._chains = dict(state.offsets), dict(state.chains)
        self._partitions = [
            TopicPartition(topic, partition)
            for source in Source
            for topic in [self._topics.topic(source)]
            for partition in range(await self._bus.partitions(topic))
        ]
        consumer = self._bus.consumer(read_committed=True, auto_offset_reset="none")
        consumer.assign(self._partitions)
        await consumer.start()
        self._consumer = consumer
        for tp in self._partitions:
            consumer.seek(tp, self._committed.get((tp.topic, tp.partition), 0))
        log.info(
            "settlement consumer positioned",
            offsets={f"{t}[{p}]": o for (t, p), o in sorted(self._committed.items())},
            symbols=len(self._chains),
        )

    async def close(self) -> None:
        """Stop the consumer."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def run(self) -> NoReturn:
        """Commit batches for ever (until cancelled, or a FatalError)."""
        while True:
            await self.step()

    async def step(self) -> int:
        """Read one batch and commit it; return how many records it applied.

        Raises:
            FatalError: a record that does not decode, a broken chain, a record that cannot
                be booked, an inconsistent order, or offsets moved by another writer.
        """
        records = await self._fetch()
        if not records:
            await self._probe_lag()
            return 0
        started = time.perf_counter()
        plan = self._plan(self._carry + self._decode(records))
        if plan.applied:
            await self._commit(plan)
        self._carry = plan.carry
        self._metrics.carried.set(len(plan.carry))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        await self._probe_lag()
        return plan.applied

    async def _fetch(self) -> list[Record]:
        consumer = self._running()
        records = await consumer.getmany(timeout_ms=_IDLE_POLL_MS, max_records=self._batch_max)
        if not records:
            return records
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_wait
        while len(records) < self._batch_max:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=int(remaining * 1000), max_records=self._batch_max - len(records)
            )
            if not more:
                break
            records.extend(more)
        return records

    def _decode(self, records: Sequence[Record]) -> list[LogItem]:
        items = []
        sources = self._sources
        for record in records:
            source = sources[record.topic]
            try:
                value = _DECODERS[source](record.value)
            except CodecError as e:
                where = f"{record.topic}[{record.partition}] offset {record.offset}"
                log.error("undecodable record", topic=record.topic, partition=record.partition,
                          offset=record.offset, error=str(e))  # fmt: skip
                raise FatalError(
                    f"{where} does not decode ({e}); settlement stops rather than skip it"
                ) from e
            items.append(LogItem(source, record.partition, record.offset, value))
        return items

    def _plan(self, items: list[LogItem]) -> BatchPlan:
        try:
            return plan_batch(items, self._chains, self._markets, self._assets)
        except ChainBreakError as e:
            stored = self._chains.get(e.symbol)
            log.error(
                "engine chain broken",
                symbol=e.symbol,
                partition=e.partition,
                offset=e.offset,
                stored_sequence=stored.sequence if stored else 0,
                stored_hash=stored.hash.hex() if stored else "genesis",
                detail=e.detail,
            )
            raise FatalError(str(e)) from e
        except BatchError as e:
            log.error("record cannot be settled", error=str(e))
            raise FatalError(str(e)) from e

    async def _commit(self, plan: BatchPlan) -> None:
        offsets = {
            (self._topics.topic(source), partition): offset
            for (source, partition), offset in plan.offsets.items()
        }
        async with self._store.batch(self._committed) as writer:
            existing = await writer.load_orders(order_ids(plan.order_changes))
            try:
                orders = fold_orders(existing, plan.order_changes)
            except OrderConflictError as e:
                log.error("order records conflict", error=str(e))
                raise FatalError(str(e)) from e
            await writer.write(plan, orders.values(), offsets, self._topics.engine)
        self._committed.update(offsets)
        self._chains.update(plan.chains)
        self._count(plan, len(orders))

    def _count(self, plan: BatchPlan, orders: int) -> None:
        metrics = self._metrics
        metrics.batches.inc()
        for table, rows in (
            ("trades", len(plan.trades)),
            ("ledger_entries", len(plan.ledger)),
            ("orders", orders),
            ("candles", len(plan.candles)),
        ):
            metrics.rows.labels(table=table).inc(rows)
        metrics.records.inc(plan.applied)

    async def _probe_lag(self) -> None:
        """Update the lag gauge, at most once a second (it asks the log for its ends)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_lag_probe:
            return
        self._next_lag_probe = loop.time() + _LAG_PROBE_SECONDS
        consumer = self._running()
        ends = await consumer.end_offsets(self._partitions)
        lag = 0
        for tp, end in ends.items():
            lag += max(end - await consumer.position(tp), 0)
        self._metrics.consumer_lag.set(lag + len(self._carry))

    def _running(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the settlement consumer is not started")
        return self._consumer
