"""Where the core stands in its three topics: offsets per partition, sequences per symbol."""

from __future__ import annotations

from ordermesh.model import Symbol
from ubscore.core.errors import InvariantError


class LogPosition:
    """The last offset applied per (topic, partition), and the last engine sequence per symbol.

    Offsets make replay idempotent: a record at or below the last applied offset of its
    partition is skipped. Engine sequences are checked on top: the matcher numbers each
    symbol's events from 1 without gaps, so a gap means events were lost (DESIGN §11).
    """

    __slots__ = ("offsets", "sequences")

    def __init__(
        self,
        offsets: dict[tuple[str, int], int] | None = None,
        sequences: dict[Symbol, int] | None = None,
    ) -> None:
        self.offsets: dict[tuple[str, int], int] = dict(offsets or {})
        self.sequences: dict[Symbol, int] = dict(sequences or {})

    def advance(self, topic: str, partition: int, offset: int) -> bool:
        """Record `offset` as applied; False if it (or a later one) already was."""
        key = (topic, partition)
        if offset <= self.offsets.get(key, -1):
            return False
        self.offsets[key] = offset
        return True

    def next_offset(self, topic: str, partition: int) -> int:
        """Where to resume a partition: after the last offset applied, else from 0."""
        return self.offsets.get((topic, partition), -1) + 1

    def is_new(self, symbol: Symbol, sequence: int) -> bool:
        """True for the symbol's next sequence, False for one already applied.

        Raises:
            InvariantError: the sequence skips ahead: events in between are missing.
        """
        last = self.sequences.get(symbol, 0)
        if sequence <= last:
            return False
        if sequence != last + 1:
            raise InvariantError(
                f"{symbol}: engine sequence {sequence} follows {last}; events are missing"
            )
        return True

    def applied(self, symbol: Symbol, sequence: int) -> None:
        """Record `sequence` as the symbol's last applied engine event."""
        self.sequences[symbol] = sequence
