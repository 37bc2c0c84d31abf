"""Kafka through aiokafka: protobuf round trips, keyed partitioning, transactions, EOS."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from ordermesh.v1 import common_pb2, events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

TopicFactory = Callable[..., str]

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT")
WAIT_SECONDS = 30.0


# --- messages ---------------------------------------------------------------------------


def order_command(i: int, symbol: str) -> events_pb2.OrderCommand:
    """A NewOrder, or every fifth time a CancelOrder, with fields derived from `i`."""
    command = events_pb2.OrderCommand(symbol=symbol, timestamp_ns=1_700_000_000_000_000_000 + i)
    if i % 5 == 4:
        command.cancel_order.CopyFrom(
            events_pb2.CancelOrder(order_id=i - 1, account_id=7, client_order_id=f"c-{i - 1}")
        )
        return command
    command.new_order.CopyFrom(
        events_pb2.NewOrder(
            order_id=i,
            account_id=7 + i % 3,
            client_order_id=f"c-{i}",
            side=common_pb2.SIDE_BUY if i % 2 else common_pb2.SIDE_SELL,
            order_type=common_pb2.ORDER_TYPE_LIMIT,
            time_in_force=common_pb2.TIME_IN_FORCE_GTC,
            price=6_500_000_000 + i,
            quantity=100_000 * (i + 1),
            self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_EXPIRE_TAKER,
        )
    )
    return command


def engine_event(i: int, symbol: str) -> events_pb2.EngineEvent:
    """An EngineEvent of one of the four kinds, chosen by `i`."""
    event = events_pb2.EngineEvent(
        symbol=symbol,
        sequence=i + 1,
        input_offset=i,
        timestamp_ns=1_700_000_000_000_000_000 + i,
        hash=bytes([i % 256]) * 32,
    )
    kind = i % 4
    if kind == 0:
        event.order_accepted.CopyFrom(
            events_pb2.OrderAccepted(order_id=i, account_id=3, price=10_000, quantity=2)
        )
    elif kind == 1:
        event.trade_executed.CopyFrom(
            events_pb2.TradeExecuted(
                trade_id=i,
                maker_order_id=1,
                taker_order_id=i,
                price=10_000,
                quantity=2,
                quote_quantity=20_000,
                maker_fee=2,
                taker_fee=1,
            )
        )
    elif kind == 2:
        event.order_done.CopyFrom(
            events_pb2.OrderDone(order_id=i, status=common_pb2.ORDER_STATUS_FILLED)
        )
    else:
        event.cancel_rejected.CopyFrom(
            events_pb2.CancelRejected(order_id=i, reason=common_pb2.REJECT_REASON_INVALID_ORDER_ID)
        )
    return event


def accepted(record: ConsumerRecord[bytes, bytes]) -> events_pb2.EngineEvent:
    """The transform of the exactly-once test: a NewOrder record becomes an OrderAccepted."""
    command = events_pb2.OrderCommand.FromString(record.value)
    new = command.new_order
    return events_pb2.EngineEvent(
        symbol=command.symbol,
        sequence=record.offset + 1,  # one symbol on one partition: offsets are its sequence
        input_offset=record.offset,
        timestamp_ns=command.timestamp_ns,
        order_accepted=events_pb2.OrderAccepted(
            order_id=new.order_id,
            account_id=new.account_id,
            client_order_id=new.client_order_id,
            side=new.side,
            order_type=new.order_type,
            time_in_force=new.time_in_force,
            price=new.price,
            quantity=new.quantity,
        ),
    )


# --- clients ----------------------------------------------------------------------------


def idempotent_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **options
    )


def transactional_producer(bootstrap: str) -> AIOKafkaProducer:
    return idempotent_producer(bootstrap, transactional_id=f"test-txn-{uuid.uuid4().hex}")


def consumer(
    bootstrap: str, isolation_level: str = "read_committed", group_id: str | None = None
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )


def partitions(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(count)]


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    messages: Iterable[events_pb2.OrderCommand | events_pb2.EngineEvent],
) -> list[Any]:
    """Send in order (key = symbol) and wait for every acknowledgement; return the metadata."""
    pending = [
        await producer.send(topic, m.SerializeToString(), key=m.symbol.encode()) for m in messages
    ]
    return list(await asyncio.gather(*pending))


async def read_to_end(
    reader: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Fetch from the current positions up to the end offsets as of now.

    The end is the high watermark, or for read_committed the last stable offset.
    """
    end = await reader.end_offsets(list(tps))
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while [tp for tp in tps if await reader.position(tp) < end[tp]]:
            batches = await reader.getmany(*tps, timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    return records


async def read_topic(
    bootstrap: str, topic: str, count: int, isolation_level: str = "read_committed"
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every partition of `topic` from its beginning to its current end."""
    async with consumer(bootstrap, isolation_level) as reader:
        tps = partitions(topic, count)
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        return await read_to_end(reader, tps)


def by_key(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """Values per key, each in offset order."""
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        grouped[record.key].append(record.value)
    return dict(grouped)


# --- tests ------------------------------------------------------------------------------


async def test_protobuf_messages_round_trip(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    orders = kafka_topic_factory(3, prefix="orders")
    engine = kafka_topic_factory(3, prefix="engine")
    commands = [order_command(i, SYMBOLS[i % 3]) for i in range(40)]
    events = [engine_event(i, SYMBOLS[i % 3]) for i in range(40)]

    async with idempotent_producer(kafka_bootstrap) as producer:
        await send_all(producer, orders, commands)
        await send_all(producer, engine, events)

    got_commands = by_key(await read_topic(kafka_bootstrap, orders, 3))
    got_events = by_key(await read_topic(kafka_bootstrap, engine, 3))

    for symbol in SYMBOLS[:3]:
        key = symbol.encode()
        decoded_commands = [events_pb2.OrderCommand.FromString(v) for v in got_commands[key]]
        decoded_events = [events_pb2.EngineEvent.FromString(v) for v in got_events[key]]
        assert decoded_commands == [c for c in commands if c.symbol == symbol]
        assert decoded_events == [e for e in events if e.symbol == symbol]
    assert {c.WhichOneof("command") for c in commands} == {"new_order", "cancel_order"}
    assert len({e.WhichOneof("event") for e in events}) == 4


async def test_records_with_the_same_key_share_a_partition(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    topic = kafka_topic_factory(4, prefix="orders")
    commands = [order_command(i, SYMBOLS[i % len(SYMBOLS)]) for i in range(100)]

    async with idempotent_producer(kafka_bootstrap) as producer:
        acks = await send_all(producer, topic, commands)

    sent_to: dict[str, set[int]] = defaultdict(set)
    for command, ack in zip(commands, acks, strict=True):
        sent_to[command.symbol].add(ack.partition)
    assert all(len(parts) == 1 for parts in sent_to.values()), sent_to
    assert len(set().union(*sent_to.values())) > 1  # keys do spread over partitions

    records = await read_topic(kafka_bootstrap, topic, 4)
    assert len(records) == len(commands)
    for record in records:
        assert record.key is not None
        assert {record.partition} == sent_to[record.key.decode()]


async def test_read_committed_sees_only_committed_transactions(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    topic = kafka_topic_factory(2, prefix="engine")
    committed = [engine_event(i, SYMBOLS[i % 2]) for i in range(10)]
    aborted = [engine_event(i, SYMBOLS[i % 2]) for i in range(100, 106)]

    async with transactional_producer(kafka_bootstrap) as producer:
        async with producer.transaction():
            await send_all(producer, topic, committed)
        await producer.begin_transaction()
        await send_all(producer, topic, aborted)  # acknowledged: in the log, then aborted
        await producer.abort_transaction()

    def sequences(records: list[ConsumerRecord[bytes, bytes]]) -> list[int]:
        return sorted(events_pb2.EngineEvent.FromString(r.value).sequence for r in records)

    read_committed = await read_topic(kafka_bootstrap, topic, 2, "read_committed")
    read_uncommitted = await read_topic(kafka_bootstrap, topic, 2, "read_uncommitted")
    assert sequences(read_committed) == [e.sequence for e in committed]
    assert sequences(read_uncommitted) == [e.sequence for e in committed + aborted]


async def transform_batch(
    bootstrap: str, transactional_id: str, group_id: str, source: str, sink: str, *, commit: bool
) -> list[ConsumerRecord[bytes, bytes]]:
    """One run of a matcher-like stage, as after a restart; returns the inputs it read.

    Starting the producer first (InitProducerId) waits until the previous run's
    transaction is complete, markers included; only then are the group's committed
    offsets stable. The stage resumes there, transforms what follows into `sink`, and
    puts outputs and input offsets in one transaction, committed or aborted per `commit`.
    """
    async with (
        idempotent_producer(bootstrap, transactional_id=transactional_id) as producer,
        consumer(bootstrap, group_id=group_id) as reader,
    ):
        tps = partitions(source, 1)
        reader.assign(tps)
        inputs = await read_to_end(reader, tps)
        positions = {tp: await reader.position(tp) for tp in tps}
        await producer.begin_transaction()
        await send_all(producer, sink, [accepted(r) for r in inputs])
        await producer.send_offsets_to_transaction(positions, group_id)  # once per transaction
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    return inputs


async def test_consume_transform_produce_is_exactly_once(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    source = kafka_topic_factory(1, prefix="orders")
    sink = kafka_topic_factory(1, prefix="engine")
    txn_id, group_id = f"test-txn-{uuid.uuid4().hex}", f"test-matcher-{uuid.uuid4().hex}"
    stage = (kafka_bootstrap, txn_id, group_id, source, sink)
    commands = [order_command(i, "BTC-USDT") for i in range(12) if i % 5 != 4]  # NewOrders only

    async with idempotent_producer(kafka_bootstrap) as plain:
        await send_all(plain, source, commands[:6])
        first = await transform_batch(*stage, commit=True)
        await send_all(plain, source, commands[6:])
        aborted = await transform_batch(*stage, commit=False)
        retried = await transform_batch(*stage, commit=True)
    async with idempotent_producer(kafka_bootstrap, transactional_id=txn_id):
        pass  # a next run: the last transaction is now complete, so its output is readable

    assert [r.offset for r in first] == list(range(6))
    assert [r.offset for r in aborted] == [r.offset for r in retried] == list(range(6, 10))

    output = await read_topic(kafka_bootstrap, sink, 1, "read_committed")
    got = [events_pb2.EngineEvent.FromString(r.value) for r in output]
    assert got == [accepted(r) for r in first + retried]
    assert len(await read_topic(kafka_bootstrap, sink, 1, "read_uncommitted")) == 14

    async with consumer(kafka_bootstrap, group_id=group_id) as reader:
        assert await reader.committed(TopicPartition(source, 0)) == len(commands)
