"""The topics of the mesh, their keys and default partition counts."""

from __future__ import annotations

from typing import Final

from aiokafka.partitioner import murmur2

from ordermesh.bus.base import TopicSpec

ORDERS: Final = "ordermesh.orders"
"""OrderCommand, key = symbol; written by ubscore, read by the matcher."""
ENGINE: Final = "ordermesh.engine"
"""EngineEvent, key = symbol; written by the matcher, read by ubscore, settlement, gateway."""
LEDGER: Final = "ordermesh.ledger"
"""LedgerEvent, key = account; written by ubscore, read by settlement (and ubscore's replay)."""

TRACEPARENT_HEADER: Final = "traceparent"
"""W3C trace context carried in record headers, so one order is one trace."""


def default_specs(partitions: int = 4) -> list[TopicSpec]:
    """The three topics, each with `partitions` partitions."""
    return [TopicSpec(name, partitions) for name in (ORDERS, ENGINE, LEDGER)]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to: Kafka's default partitioner, as both buses use.

    Raises:
        ValueError: `partitions` is below 1.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, was {partitions}")
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
