"""The matcher's pure core: deterministic price-time order books and their event chain.

No I/O, no clock, no randomness, nothing asynchronous: commands in, events out. The
service around it (consumer, producer, snapshots) lives outside `core`.
"""

from matcher.core.book import OrderBook, WrongSymbolError
from matcher.core.chain import GENESIS_HASH, EventChain
from matcher.core.engine import MatchingEngine, UnknownSymbolError
from matcher.core.snapshot import BookSnapshot, LevelView, OrderSnapshot, SnapshotError
from matcher.core.verify import (
    ChainError,
    ChainVerifier,
    command_hash,
    event_bytes,
    verify_chain,
)

__all__ = [
    "GENESIS_HASH",
    "BookSnapshot",
    "ChainError",
    "ChainVerifier",
    "EventChain",
    "LevelView",
    "MatchingEngine",
    "OrderBook",
    "OrderSnapshot",
    "SnapshotError",
    "UnknownSymbolError",
    "WrongSymbolError",
    "command_hash",
    "event_bytes",
    "verify_chain",
]
