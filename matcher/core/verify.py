"""Recompute and check the engine event hash chain from event values alone.

The layout and the per-command link are documented in `matcher.core.chain`; this module
packs them from the fields of `EngineEvent`s (whoever built them), so writer and reader
check each other. `ChainVerifier` takes events one at a time, as a consumer reads them,
and says when a command's events are complete and verified; `verify_chain` checks a whole
run. A mismatch is an alarm and a stop, never a reset.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha256

from matcher.core.chain import (
    GENESIS_HASH,
    HASH_SIZE,
    KIND_CANCEL_REJECTED,
    KIND_ORDER_ACCEPTED,
    KIND_ORDER_DONE,
    KIND_TRADE_EXECUTED,
    ChainLayout,
)
from ordermesh.events import CancelRejected, EngineEvent, OrderAccepted, OrderDone, TradeExecuted


class ChainError(ValueError):
    """Events that do not form an unbroken chain: a gap, a foreign symbol or a wrong hash."""


_LAYOUTS: dict[str, ChainLayout] = {}


def _layout_of(symbol: str) -> ChainLayout:
    layout = _LAYOUTS.get(symbol)
    if layout is None:
        layout = _LAYOUTS[symbol] = ChainLayout(symbol)  # type: ignore[arg-type]
    return layout


def event_bytes(event: EngineEvent) -> bytes:
    """The canonical bytes of `event`: envelope and body, laid out as in matcher.core.chain."""
    layout = _layout_of(event.symbol)
    head = (len(layout.symbol_bytes), layout.symbol_bytes, event.sequence, event.input_offset,
            event.timestamp_ns)  # fmt: skip
    body = event.body
    if isinstance(body, OrderAccepted):
        client = body.client_order_id.encode()
        return layout.accepted.pack(
            KIND_ORDER_ACCEPTED, *head,
            body.order_id, body.account_id, body.side, body.order_type, body.time_in_force,
            body.price, body.quantity, body.quote_budget, len(client),
        ) + client  # fmt: skip
    if isinstance(body, TradeExecuted):
        return layout.trade.pack(
            KIND_TRADE_EXECUTED, *head,
            body.trade_id, body.maker_order_id, body.taker_order_id, body.maker_account_id,
            body.taker_account_id, body.taker_side, body.price, body.quantity,
            body.quote_quantity, body.maker_fee, body.taker_fee,
        )  # fmt: skip
    if isinstance(body, OrderDone):
        client = body.client_order_id.encode()
        return layout.done.pack(
            KIND_ORDER_DONE, *head,
            body.order_id, body.account_id, body.status, body.reason, body.filled_quantity,
            body.remaining_quantity, body.filled_quote_quantity, body.side, body.price,
            len(client),
        ) + client  # fmt: skip
    if isinstance(body, CancelRejected):
        client = body.client_order_id.encode()
        return layout.cancel_rejected.pack(
            KIND_CANCEL_REJECTED, *head, body.order_id, body.account_id, body.reason, len(client)
        ) + client  # fmt: skip
    raise TypeError(f"not an engine event body: {type(body).__name__}")


def command_hash(previous_hash: bytes, events: Iterable[EngineEvent]) -> bytes:
    """sha256(previous_hash || event_bytes of each event): the hash one command's events carry."""
    if len(previous_hash) != HASH_SIZE:
        raise ValueError(f"previous_hash must be {HASH_SIZE} bytes, was {len(previous_hash)}")
    digest = sha256(previous_hash)
    for event in events:
        digest.update(event_bytes(event))
    return digest.digest()


class ChainVerifier:
    """Checks one symbol's events as they arrive, continuing from a known point.

    Every event must follow the previous sequence number; the events of one command share
    its input_offset and hash; a command's group is complete, and verified, at the event
    where the digest of the group so far equals that hash. An event that breaks any of this
    raises ChainError.
    """

    __slots__ = ("_digest", "_group_hash", "_group_offset", "_last_offset", "hash", "sequence",
                 "symbol")  # fmt: skip

    def __init__(
        self,
        previous_hash: bytes = GENESIS_HASH,
        previous_sequence: int = 0,
        symbol: str | None = None,
    ) -> None:
        if len(previous_hash) != HASH_SIZE:
            raise ValueError(f"previous_hash must be {HASH_SIZE} bytes, was {len(previous_hash)}")
        self.hash = previous_hash
        """The hash of the last complete command."""
        self.sequence = previous_sequence
        """The sequence number of the last event taken."""
        self.symbol = symbol
        """The chain's symbol (from the first event when not given)."""
        self._last_offset: int | None = None
        self._group_offset: int | None = None
        self._group_hash = b""
        self._digest = sha256()

    @property
    def complete(self) -> bool:
        """True unless a command's events have begun and not yet all arrived."""
        return self._group_offset is None

    def add(self, event: EngineEvent) -> bool:
        """Take the next event; True when it completes (and so verifies) its command.

        Raises:
            ChainError: wrong symbol, a sequence gap, events of two commands interleaved or
                out of offset order, or a hash that does not match.
        """
        if self.symbol is None:
            self.symbol = event.symbol
        elif event.symbol != self.symbol:
            raise ChainError(f"event {event.sequence} is for {event.symbol!r}, not {self.symbol!r}")
        if event.sequence != self.sequence + 1:
            raise ChainError(
                f"{self.symbol}: sequence gap, expected {self.sequence + 1}, was {event.sequence}"
            )
        if self._group_offset is None:
            self._open(event)
        elif event.input_offset != self._group_offset or event.hash != self._group_hash:
            raise ChainError(
                f"{self.symbol}: event {event.sequence} (offset {event.input_offset}) arrived "
                f"before the events of offset {self._group_offset} were complete"
            )
        self.sequence = event.sequence
        self._digest.update(event_bytes(event))
        if self._digest.copy().digest() != self._group_hash:
            return False
        self.hash = self._group_hash
        self._last_offset = self._group_offset
        self._group_offset = None
        return True

    def _open(self, event: EngineEvent) -> None:
        if self._last_offset is not None and event.input_offset <= self._last_offset:
            raise ChainError(
                f"{self.symbol}: event {event.sequence} answers offset {event.input_offset}, "
                f"not after the previous command's {self._last_offset}"
            )
        self._group_offset = event.input_offset
        self._group_hash = event.hash
        self._digest = sha256(self.hash)

    def close(self) -> None:
        """Raise ChainError if the last command's events are incomplete (or do not match)."""
        if self._group_offset is not None:
            raise ChainError(
                f"{self.symbol}: the events of offset {self._group_offset} up to sequence "
                f"{self.sequence} do not hash to the hash they carry: missing events or altered"
            )


def verify_chain(
    events: Iterable[EngineEvent],
    previous_hash: bytes = GENESIS_HASH,
    previous_sequence: int = 0,
) -> tuple[int, bytes]:
    """Check that `events` continue a chain, command by command; return its new end.

    Args:
        events: one symbol's events in order, ending with a command's last event.
        previous_hash: the hash of the command before the first (GENESIS_HASH at the start).
        previous_sequence: the sequence number of that command's last event (0 at the start).

    Returns:
        The last event's sequence number and hash (the inputs if there were none).

    Raises:
        ChainError: a gap, a second symbol, a hash that does not match, or events of a
            command missing at the end.
    """
    verifier = ChainVerifier(previous_hash, previous_sequence)
    for event in events:
        verifier.add(event)
    verifier.close()
    return verifier.sequence, verifier.hash
