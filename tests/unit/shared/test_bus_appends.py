"""Which producers append at once: their sends may go one after the other, without tasks."""

from __future__ import annotations

import pytest

from ordermesh.bus.base import Producer, TopicSpec, appends_at_once
from ordermesh.bus.kafka import KafkaBus
from ordermesh.bus.memory import MemoryBus

pytestmark = pytest.mark.asyncio


class Wrapper:
    """A producer that forwards to another (as test fakes do): it says nothing of itself."""

    def __init__(self, inner: Producer) -> None:
        self.inner = inner


async def test_the_memory_producer_appends_at_once_and_its_send_never_waits() -> None:
    bus = MemoryBus()
    await bus.create_topics([TopicSpec("t", 2)])
    producer = bus.producer()
    await producer.start()
    assert appends_at_once(producer)
    send = producer.send("t", b"v", key=b"k").__await__()
    with pytest.raises(StopIteration) as done:  # finished at the first step: it never waited
        send.send(None)
    assert done.value.value.offset == 0


async def test_kafka_and_unknown_producers_are_awaited_as_waiting_ones() -> None:
    assert not appends_at_once(KafkaBus("127.0.0.1:1").producer())
    assert not appends_at_once(Wrapper(MemoryBus().producer()))  # type: ignore[arg-type]
