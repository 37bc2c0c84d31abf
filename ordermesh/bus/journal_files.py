"""The journal's files: framing, checksums, torn-tail repair, atomic replace, locking.

A journal file is `MAGIC`, then frames: `u32 length | u32 crc32(body) | body`. A body starts
with a kind byte. Record bodies are binary (one per record, the hot path): see `RECORD`.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog

from ordermesh.bus.base import BusError, Record, TopicPartition

log = structlog.get_logger(__name__)

MAGIC: Final = b"OMJRNL\x00\x01"
FRAME: Final = struct.Struct("<II")
RECORD: Final = struct.Struct(
    "<cqqqiIH"
)  # kind, offset, transaction, timestamp, key, value, headers
HEADER: Final = struct.Struct("<HI")
MARKER: Final = struct.Struct("<cqqB")  # kind, offset, transaction, committed
GAP: Final = struct.Struct("<cq")  # kind, the offset the next frame has
MAX_FRAME: Final = 256 * 1024 * 1024


class JournalError(BusError):
    """The journal cannot be used: which file, where, and why."""


def frame(body: bytes) -> bytes:
    """`body` framed: its length and checksum in front."""
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def record_body(record: Record, transaction: int) -> bytes:
    """The body of a record frame (transaction 0: not transactional)."""
    key = record.key
    parts = [
        RECORD.pack(
            b"R",
            record.offset,
            transaction,
            record.timestamp_ms,
            -1 if key is None else len(key),
            len(record.value),
            len(record.headers),
        )
    ]
    if key:
        parts.append(key)
    parts.append(record.value)
    for name, value in record.headers:
        encoded = name.encode()
        parts += (HEADER.pack(len(encoded), len(value)), encoded, value)
    return b"".join(parts)


def decode_record(body: bytes, tp: TopicPartition) -> tuple[Record, int]:
    """The record of a record frame in partition `tp`, and its transaction number.

    Raises:
        ValueError: the body does not add up (sizes, trailing bytes).
        struct.error: the body is shorter than its fixed part.
    """
    _, offset, transaction, timestamp, key_size, value_size, count = RECORD.unpack_from(body)
    at = RECORD.size
    key = None if key_size < 0 else body[at : at + key_size]
    at += max(key_size, 0)
    value = body[at : at + value_size]
    at += value_size
    headers = []
    for _ in range(count):
        name_size, size = HEADER.unpack_from(body, at)
        at += HEADER.size
        name = body[at : at + name_size].decode()
        headers.append((name, body[at + name_size : at + name_size + size]))
        at += name_size + size
    if at != len(body):
        raise ValueError(f"record frame has {len(body) - at} bytes left over")
    record = Record(tp.topic, tp.partition, offset, key, value, tuple(headers), timestamp)
    return record, transaction


def split_frames(path: Path, data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The frames of a file and where the good part ends (short of a torn last frame).

    Raises:
        JournalError: not a journal, or a bad checksum before the last frame.
    """
    if len(data) < len(MAGIC):
        return [], 0  # created, not yet written: a crash at creation
    if data[: len(MAGIC)] != MAGIC:
        raise JournalError(f"{path} is not an ordermesh journal (its first bytes are wrong)")
    frames: list[tuple[int, bytes]] = []
    position, size = len(MAGIC), len(data)
    while position < size:
        if size - position < FRAME.size:
            break
        length, checksum = FRAME.unpack_from(data, position)
        end = position + FRAME.size + length
        if end > size or length > MAX_FRAME:
            break
        body = data[position + FRAME.size : end]
        if zlib.crc32(body) != checksum:
            if end == size:
                break
            raise JournalError(
                f"{path}: the frame at byte {position} fails its checksum; the journal is"
                " corrupt (restore it from a copy, or delete the directory to start afresh)"
            )
        frames.append((position, body))
        position = end
    return frames, position


def read_frames(path: Path) -> list[tuple[int, bytes]]:
    """The frames of `path`, a torn tail truncated (with a warning) and the magic in place."""
    data = path.read_bytes() if path.exists() else b""
    frames, good = split_frames(path, data)
    if good < len(data) or good == 0:
        if data:
            log.warning(
                "journal tail torn by a crash; truncated",
                file=str(path),
                position=good,
                dropped_bytes=len(data) - good,
            )
        with path.open("r+b" if path.exists() else "wb") as file:
            if good == 0:
                file.write(MAGIC)
                good = len(MAGIC)
            file.truncate(good)
            os.fsync(file.fileno())
    return frames


class AppendFile:
    """One journal file open for appending, unbuffered: every frame is one write to the OS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size == 0:
            self.write(MAGIC)

    def write(self, data: bytes) -> None:
        """Hand `data` to the OS (all of it)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def sync(self) -> None:
        """Make what was written durable (fsync)."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (no fsync)."""
        os.close(self._fd)


def sync_directory(path: Path) -> None:
    """Make the files created or renamed in a directory durable (fsync it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, frames: Sequence[bytes]) -> None:
    """Write `frames` to a new file and put it in place of `path`, atomically."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(MAGIC + b"".join(frame(body) for body in frames))
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    sync_directory(path.parent)


def lock_exclusively(path: Path, what: str) -> int:
    """Take an exclusive lock on the file `path` (created if missing), holding our pid.

    Returns:
        The file descriptor; closing it releases the lock (so does the process ending).

    Raises:
        JournalError: another process (or another open of `what` here) holds the lock;
            the message names its pid.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(
            f"{what} is in use by another process (pid {holder}); see {path}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
