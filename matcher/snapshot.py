"""Book snapshots in the shared `SnapshotStore`: one key per symbol, saved inside a transaction.

A snapshot is saved with the transactional producer of the symbol's partition, in the same
transaction as the events and the consumed offsets of its batch. So a snapshot becomes
visible only together with the committed offset that covers it: a snapshot's input offset is
always below the group's committed offset, and a new owner that restores it and replays what
follows reaches exactly the state the old owner had at that offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from matcher.codec import SnapshotCodecError, decode_snapshot, encode_snapshot
from matcher.core import BookSnapshot, OrderBook, SnapshotError
from matcher.metrics import MatcherMetrics
from ordermesh.bus.base import Producer, TopicPartition
from ordermesh.markets import Market
from ordermesh.runtime import FatalError
from ordermesh.snapshots import SnapshotError as StoredSnapshotError
from ordermesh.snapshots import SnapshotStore

log = structlog.get_logger(__name__)

KEY_PREFIX = "matcher/"
"""Snapshot keys are "matcher/<symbol>", e.g. "matcher/BTC-USDT"."""


def snapshot_key(symbol: str) -> str:
    """The store key of `symbol`'s book snapshot."""
    return KEY_PREFIX + symbol


@dataclass(frozen=True, slots=True)
class RestoredBooks:
    """The books of one partition, each from its snapshot or empty."""

    books: dict[str, OrderBook]
    """By symbol, in the order asked for."""
    from_snapshot: frozenset[str]
    """The symbols whose book came from a snapshot."""


class BookSnapshots:
    """Loads and saves the matcher's book snapshots.

    Args:
        store: where snapshots live (the bus's compacted snapshot topic in production).
        markets: the markets by symbol, to restore each book with its own rules.
        metrics: counts snapshots saved and restored.
    """

    def __init__(
        self, store: SnapshotStore, markets: Mapping[str, Market], metrics: MatcherMetrics
    ) -> None:
        self._store = store
        self._markets = markets
        self._metrics = metrics

    async def restore(self, symbols: Iterable[str]) -> RestoredBooks:
        """The book of each symbol: its newest snapshot restored, or a fresh book.

        Raises:
            FatalError: a snapshot that cannot be read or is not a consistent book of its
                market; starting from a wrong book would emit wrong events forever.
            BusError: the store could not be read.
        """
        books: dict[str, OrderBook] = {}
        restored: set[str] = set()
        for symbol in symbols:
            market = self._markets[symbol]
            snapshot = await self._load(symbol)
            if snapshot is None:
                books[symbol] = OrderBook(market)
                continue
            try:
                books[symbol] = OrderBook.restore(market, snapshot)
            except SnapshotError as e:
                raise FatalError(f"snapshot {snapshot_key(symbol)!r} is not a book: {e}") from e
            restored.add(symbol)
            self._metrics.snapshots_restored.labels(symbol).inc()
            log.info(
                "book restored from snapshot",
                symbol=symbol,
                input_offset=snapshot.input_offset,
                sequence=snapshot.sequence,
                resting_orders=len(snapshot.bids) + len(snapshot.asks),
            )
        return RestoredBooks(books, frozenset(restored))

    async def _load(self, symbol: str) -> BookSnapshot | None:
        key = snapshot_key(symbol)
        try:
            data = await self._store.load(key)
            snapshot = None if data is None else decode_snapshot(data)
        except (StoredSnapshotError, SnapshotCodecError) as e:
            raise FatalError(f"snapshot {key!r} cannot be read: {e}") from e
        if snapshot is not None and snapshot.symbol != symbol:
            raise FatalError(f"snapshot {key!r} holds the book of {snapshot.symbol!r}")
        return snapshot

    async def save(self, snapshot: BookSnapshot, producer: Producer) -> None:
        """Write `snapshot` with `producer`, inside the transaction it has open.

        Raises:
            BusError: the write failed (the transaction must not commit).
        """
        data = encode_snapshot(snapshot)
        await self._store.save(snapshot_key(snapshot.symbol), data, producer=producer)
        self._metrics.snapshots_saved.labels(snapshot.symbol).inc()
        log.debug(
            "book snapshot saved",
            symbol=snapshot.symbol,
            input_offset=snapshot.input_offset,
            sequence=snapshot.sequence,
            bytes=len(data),
        )


def replay_from(
    partition: TopicPartition,
    restored: RestoredBooks,
    committed: int | None,
    beginning: int,
    group_id: str,
) -> int:
    """Where a new owner of `partition` starts reading: after its oldest book's offset.

    Args:
        partition: the input partition taken over.
        restored: its books, from snapshots or fresh (a fresh book's offset is -1).
        committed: the group's committed offset of the partition (None: never committed).
        beginning: the first offset still in the partition.
        group_id: the consumer group, for the error message.

    Raises:
        FatalError: a snapshot at or past the committed offset (or with nothing committed):
            snapshots and offsets disagree, and resuming from either would be a guess.
    """
    where = f"{partition.topic}[{partition.partition}]"
    for symbol in restored.from_snapshot:
        offset = restored.books[symbol].last_offset
        if committed is None or offset >= committed:
            raise FatalError(
                f"the snapshot of {symbol} is at offset {offset} of {where} but group"
                f" {group_id!r} has committed {committed}: snapshots and offsets disagree"
                " (offsets lost or expired, or another group wrote the snapshots); refusing"
                " to guess where to resume"
            )
    if committed is None:
        return beginning
    start = min((book.last_offset + 1 for book in restored.books.values()), default=committed)
    if start < beginning:
        log.warning(
            "records needed for replay are gone from the log; books may miss orders",
            partition=where,
            replay_from=start,
            first_offset=beginning,
        )
        start = beginning
    return start
