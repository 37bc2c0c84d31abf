"""The in-memory bus's journal: its log and metadata on disk, so a restart resumes exactly.

Layout of a journal directory:
    LOCK                      held (flock) by the one bus that has the directory open
    meta.journal              topics, group offsets, producer epochs, transaction outcomes
    partitions/<topic>-<n>.journal
                              one per topic-partition: records and transaction markers

Every file is an 8-byte magic, then frames: `u32 length | u32 crc32(body) | body`, whose
body starts with a kind byte. Partition frames are binary (the hot path: one per record);
meta frames are JSON. Each frame is one `write` to the OS, so a process that dies loses no
frame it was told was written; `fsync` decides what survives a machine that dies.

A transaction ends with a decision frame in meta, written before its markers: a crash
between the two leaves markers missing, and the reopen writes them from the decision (as
Kafka's coordinator completes a commit after a restart). A transaction with neither
decision nor marker was open at the crash: it is aborted on reopen.

On open: a torn last frame (the crash cut a write short) is truncated with a warning; a
bad checksum anywhere else is a `JournalError` naming the file and byte position. Compacted
topics keep only the newest committed record per key, at its offset; the rest become holes.
Meta is rewritten as a checkpoint (topics, offsets, epochs), so it stays small too.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

import structlog

from ordermesh.bus.base import (
    BusError,
    ProduceOutcomeUnknownError,
    Record,
    TopicPartition,
    TopicSpec,
)
from ordermesh.bus.journal_files import (
    GAP,
    MARKER,
    AppendFile,
    JournalError,
    decode_record,
    frame,
    lock_exclusively,
    read_frames,
    record_body,
    replace_file,
    sync_directory,
)

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_MS",
    "FSYNC_POLICIES",
    "Entry",
    "FsyncPolicy",
    "Journal",
    "JournalError",
    "Recovered",
    "lock_exclusively",
]

log = structlog.get_logger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]
"""always: fsync every frame; batch: fsync what was written at most every interval; never."""
FSYNC_POLICIES: Final = ("always", "batch", "never")
DEFAULT_FSYNC_INTERVAL_MS: Final = 50

Entry = tuple[Record | None, int]
"""One offset read back: the record (None for a marker or a compacted hole), and its
transaction number (0: not transactional)."""


@dataclass(slots=True)
class Recovered:
    """The state a journal held, every transaction ended."""

    topics: dict[str, TopicSpec] = field(default_factory=dict)
    partitions: dict[TopicPartition, list[Entry]] = field(default_factory=dict)
    """Index = offset."""
    outcomes: dict[int, bool] = field(default_factory=dict)
    """Transaction number -> committed, for every transaction in `partitions`."""
    committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    next_transaction: int = 1


def _meta_body(kind: str, **fields: Any) -> bytes:
    return b"J" + json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode()


def _offsets_json(offsets: Mapping[TopicPartition, int]) -> list[list[Any]]:
    return [[tp.topic, tp.partition, offset] for tp, offset in sorted(offsets.items())]


def _offsets_from(rows: list[list[Any]]) -> dict[TopicPartition, int]:
    return {TopicPartition(str(topic), int(p)): int(offset) for topic, p, offset in rows}


def _read_meta(path: Path) -> tuple[Recovered, dict[int, bool]]:
    """Replay meta: topics, offsets, epochs, and the decided transactions' outcomes."""
    recovered, decisions = Recovered(), {}
    for position, body in read_frames(path):
        try:
            item = json.loads(body[1:])
            kind = item["kind"]
            if kind == "topic":
                spec = TopicSpec(item["name"], int(item["partitions"]), bool(item["compacted"]))
                recovered.topics[spec.name] = spec
            elif kind == "epoch":
                recovered.epochs[item["id"]] = int(item["epoch"])
            elif kind in {"offsets", "decision"}:
                commit = kind == "offsets" or bool(item["commit"])
                if kind == "decision":
                    decisions[int(item["transaction"])] = commit
                if commit and item["group"] is not None:
                    group = recovered.committed.setdefault(item["group"], {})
                    group.update(_offsets_from(item["offsets"]))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise JournalError(f"{path}: the frame at byte {position} cannot be read: {e}") from e
    return recovered, decisions


def _partition_frame(body: bytes, tp: TopicPartition) -> tuple[int, Entry | None, bool | None]:
    """(offset, entry or None for a gap, a marker's outcome or None)."""
    kind = body[:1]
    if kind == b"R":
        record, transaction = decode_record(body, tp)
        return record.offset, (record, transaction), None
    if kind == b"M":
        _, offset, transaction, committed = MARKER.unpack(body)
        return offset, (None, transaction), bool(committed)
    if kind == b"G":
        return GAP.unpack(body)[1], None, None
    raise ValueError(f"unknown frame kind {kind!r}")


def _read_partition(
    path: Path, tp: TopicPartition, compacted: bool
) -> tuple[list[Entry], dict[int, bool]]:
    """The entries of one partition (index = offset) and the outcomes its markers record."""
    entries: list[Entry] = []
    markers: dict[int, bool] = {}
    for position, body in read_frames(path):
        try:
            offset, entry, outcome = _partition_frame(body, tp)
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            raise JournalError(f"{path}: the frame at byte {position} cannot be read: {e}") from e
        if offset < len(entries) or (offset > len(entries) and not compacted):
            raise JournalError(
                f"{path}: the frame at byte {position} has offset {offset},"
                f" expected {len(entries)}; the journal is corrupt"
            )
        entries.extend([(None, 0)] * (offset - len(entries)))
        if entry is not None:
            entries.append(entry)
        if outcome is not None and entry is not None:
            markers[entry[1]] = outcome
    return entries, markers


def _end_open_transactions(
    path: Path, entries: list[Entry], markers: dict[int, bool], outcomes: dict[int, bool]
) -> None:
    """Write the markers a crash kept from being written: decided ones, else an abort."""
    first: dict[int, int] = {}
    for offset, (_, transaction) in enumerate(entries):
        if transaction and transaction not in markers:
            first.setdefault(transaction, offset)
    if not first:
        return
    frames = []
    for transaction in sorted(first, key=first.__getitem__):
        committed = outcomes.setdefault(transaction, False)
        frames.append(frame(MARKER.pack(b"M", len(entries), transaction, committed)))
        entries.append((None, transaction))
        log.warning(
            "transaction left open by a crash: ended on reopen",
            file=str(path),
            transaction=transaction,
            outcome="committed (decided before the crash)" if committed else "aborted",
        )
    with path.open("ab") as file:
        file.write(b"".join(frames))
        os.fsync(file.fileno())


def _compact(path: Path, entries: list[Entry], outcomes: dict[int, bool]) -> None:
    """Keep the newest committed record per key, at its offset; rewrite the file if less."""
    live = [
        offset
        for offset, (record, transaction) in enumerate(entries)
        if record is not None and (transaction == 0 or outcomes[transaction])
    ]
    newest: dict[bytes, int] = {}
    for offset in live:
        record = entries[offset][0]
        if record is not None and record.key is not None:
            newest[record.key] = offset
    keep = [o for o in live if (r := entries[o][0]) and (r.key is None or newest[r.key] == o)]
    if len(keep) == sum(1 for record, transaction in entries if record is not None or transaction):
        return
    frames = [record_body(record, 0) for o in keep if (record := entries[o][0]) is not None]
    if not keep or keep[-1] + 1 < len(entries):
        frames.append(GAP.pack(b"G", len(entries)))
    kept = {o: entries[o][0] for o in keep}
    entries[:] = [(kept.get(o), 0) for o in range(len(entries))]
    replace_file(path, frames)
    log.info("compacted", file=str(path), kept=len(keep), offsets=len(entries))


def _recover(directory: Path) -> Recovered:
    """Read the directory back; end open transactions, compact, checkpoint meta."""
    recovered, outcomes = _read_meta(directory / _META)
    read: dict[TopicPartition, tuple[list[Entry], dict[int, bool]]] = {}
    for spec in recovered.topics.values():
        for tp in _partitions(spec):
            read[tp] = _read_partition(_partition_path(directory, tp), tp, spec.compacted)
    for _, markers in read.values():
        for transaction, committed in markers.items():
            outcomes.setdefault(transaction, committed)
    for tp, (entries, markers) in read.items():
        path = _partition_path(directory, tp)
        _end_open_transactions(path, entries, markers, outcomes)
        if recovered.topics[tp.topic].compacted:
            _compact(path, entries, outcomes)
        recovered.partitions[tp] = entries
    numbers = {n for entries, _ in read.values() for _, n in entries if n}
    recovered.outcomes = {n: outcomes[n] for n in numbers}
    recovered.next_transaction = max((*numbers, *outcomes), default=0) + 1
    replace_file(directory / _META, _checkpoint(recovered))
    return recovered


def _checkpoint(recovered: Recovered) -> list[bytes]:
    frames = [
        _meta_body("topic", name=s.name, partitions=s.partitions, compacted=s.compacted)
        for s in recovered.topics.values()
    ]
    frames += [_meta_body("epoch", id=tid, epoch=e) for tid, e in recovered.epochs.items()]
    frames += [
        _meta_body("offsets", group=group, offsets=_offsets_json(offsets))
        for group, offsets in recovered.committed.items()
        if offsets
    ]
    return frames


_META: Final = "meta.journal"
_PARTITIONS: Final = "partitions"


def _partitions(spec: TopicSpec) -> list[TopicPartition]:
    return [TopicPartition(spec.name, index) for index in range(spec.partitions)]


def _partition_path(directory: Path, tp: TopicPartition) -> Path:
    return directory / _PARTITIONS / f"{quote(tp.topic, safe='')}-{tp.partition}.journal"


class Journal:
    """Appends every change of a `MemoryBus` to files in a directory it holds locked.

    Open with `Journal.open`, which also gives back the state the directory held.
    """

    def __init__(
        self,
        directory: Path,
        lock: int,
        topics: Sequence[TopicSpec],
        fsync: FsyncPolicy,
        fsync_interval_ms: int,
    ) -> None:
        self.directory = directory
        self._lock = lock
        self._fsync = fsync
        self._interval = fsync_interval_ms / 1000
        self._meta = AppendFile(directory / _META)
        self._files: dict[TopicPartition, AppendFile] = {}
        self._dirty: set[AppendFile] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._broken: str | None = None
        self._closed = False
        for spec in topics:
            self._open_partitions(spec)

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        fsync: FsyncPolicy = "batch",
        fsync_interval_ms: int = DEFAULT_FSYNC_INTERVAL_MS,
    ) -> tuple[Journal, Recovered]:
        """Lock `directory` (created if missing), read it back, and open it for appending.

        Raises:
            JournalError: in use by another bus, corrupt, or a setting is invalid.
            OSError: the directory cannot be created or read.
        """
        if fsync not in FSYNC_POLICIES:
            raise JournalError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, was {fsync!r}")
        if fsync_interval_ms < 1:
            raise JournalError(f"fsync_interval_ms must be at least 1, was {fsync_interval_ms}")
        (directory / _PARTITIONS).mkdir(parents=True, exist_ok=True)
        lock = lock_exclusively(directory / "LOCK", f"the bus journal {directory}")
        try:
            recovered = _recover(directory)
            journal = cls(
                directory, lock, list(recovered.topics.values()), fsync, fsync_interval_ms
            )
        except BaseException:
            os.close(lock)
            raise
        return journal, recovered

    def create_topic(self, spec: TopicSpec) -> None:
        """Record a new topic and create its partition files."""
        body = _meta_body(
            "topic", name=spec.name, partitions=spec.partitions, compacted=spec.compacted
        )
        self._write(self._meta, frame(body))
        self._open_partitions(spec)

    def append(self, record: Record, transaction: int) -> None:
        """Record `record` (transaction 0: not transactional) at its offset."""
        self._write(self._files[record.topic_partition], frame(record_body(record, transaction)))

    def end_transaction(
        self,
        transaction: int,
        *,
        commit: bool,
        markers: Sequence[tuple[TopicPartition, int]],
        offsets: tuple[str, Mapping[TopicPartition, int]] | None,
    ) -> None:
        """Record the outcome (with the offsets it commits), then its marker per partition."""
        group, committed = offsets if offsets is not None else (None, {})
        decision = _meta_body(
            "decision",
            transaction=transaction,
            commit=commit,
            group=group,
            offsets=_offsets_json(committed),
        )
        self._write(self._meta, frame(decision))
        for tp, offset in markers:
            self._write(self._files[tp], frame(MARKER.pack(b"M", offset, transaction, commit)))

    def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Record a group's committed offsets."""
        body = _meta_body("offsets", group=group, offsets=_offsets_json(offsets))
        self._write(self._meta, frame(body))

    def fence(self, transactional_id: str, epoch: int) -> None:
        """Record a producer epoch, so producers started after a restart still fence."""
        self._write(self._meta, frame(_meta_body("epoch", id=transactional_id, epoch=epoch)))

    def close(self) -> None:
        """Flush to disk (unless fsync is never), close the files, release the directory."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            if self._fsync != "never" and self._broken is None:
                for file in (self._meta, *self._files.values()):
                    file.sync()
        finally:
            for file in (self._meta, *self._files.values()):
                file.close()
            os.close(self._lock)

    def _open_partitions(self, spec: TopicSpec) -> None:
        for tp in _partitions(spec):
            self._files[tp] = AppendFile(_partition_path(self.directory, tp))
        if self._fsync != "never":
            sync_directory(self.directory / _PARTITIONS)

    def _write(self, file: AppendFile, data: bytes) -> None:
        if self._closed:
            raise BusError(f"the bus journal {self.directory} is closed")
        if self._broken is not None:
            raise ProduceOutcomeUnknownError(
                f"the bus journal failed earlier ({self._broken}); restart to recover"
            )
        try:
            file.write(data)
            if self._fsync == "always":
                file.sync()
            elif self._fsync == "batch":
                self._dirty.add(file)
                self._schedule_sync()
        except OSError as e:
            self._broken = f"{file.path}: {e}"
            raise ProduceOutcomeUnknownError(
                f"cannot write the bus journal {file.path}: {e}; restart to recover"
            ) from e

    def _schedule_sync(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._sync()
            return
        self._timer = loop.call_later(self._interval, self._sync)

    def _sync(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, set()
        try:
            for file in dirty:
                file.sync()
        except OSError as e:
            self._broken = f"fsync: {e}"
            log.error("the bus journal cannot fsync; further writes fail", error=str(e))
