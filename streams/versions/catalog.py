"""The `policies` topic: every published set, in the order it was published.

One partition, so publications have one order every worker reads alike;
compacted with a key per publication, so nothing is ever compacted away and a
rollback can name any version published before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from schemas.published import PublishedPolicy
from streams.kafka import topics
from streams.runtime import security
from streams.runtime.settings import Settings

log = structlog.get_logger(__name__)


class PublishRefused(Exception):
    """The broker would not take the set (too large, not authorized, unreachable)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One publication and where it sits on the topic."""

    offset: int
    published: PublishedPolicy


async def publish(settings: Settings, published: PublishedPolicy) -> int:
    """Put `published` on the topic; its offset once every replica has it."""
    value = published.encode()
    limit = settings.producer_max_request_bytes
    if len(value) + len(published.key) + 512 > limit:
        raise PublishRefused(
            f"the set is {len(value):,} bytes compressed, over what a record may be "
            f"({limit:,}, CLARION_PRODUCER_MAX_REQUEST_BYTES); move large HTML out of it"
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_request_size=limit,
        **security.for_settings(settings),
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            settings.topic(topics.POLICIES), value, key=published.key, partition=0
        )
        return int(sent.offset)
    finally:
        await topics.stop_client(producer)


async def read(settings: Settings) -> list[Entry]:
    """Every publication on the topic now, oldest first."""
    found: list[Entry] = []
    async for entry in _entries(settings, start=0, follow=False):
        found.append(entry)
    return found


async def follow(settings: Settings, start: int) -> AsyncIterator[Entry]:
    """Each publication from offset `start` on, as it arrives (never ends by itself)."""
    async for entry in _entries(settings, start=start, follow=True):
        yield entry


async def _entries(settings: Settings, start: int, follow: bool) -> AsyncIterator[Entry]:
    options = security.for_settings(settings)
    tp = TopicPartition(settings.topic(topics.POLICIES), 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.producer_max_request_bytes + 65_536,
        **options,
    )
    await consumer.start()
    try:
        end = 0
        if not follow:  # asked before `assign`: after it, aiokafka waits a second for metadata
            reported = await consumer.end_offsets([tp])
            end = (await topics.read_past(settings.kafka_bootstrap, reported, options))[tp]
        consumer.assign([tp])
        consumer.seek(tp, start)
        position = start
        while follow or position < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                position = record.offset + 1
                entry = _entry(record.offset, record.value)
                if entry is not None:
                    yield entry
            if not batch and not follow and await consumer.position(tp) >= end:
                break  # the end is past a gap (compaction, a marker): nothing more to read
    finally:
        await topics.stop_client(consumer)


def _entry(offset: int, value: bytes | None) -> Entry | None:
    """None, logged, for a record that is not a publication: the topic is shared, the
    worker goes on with what it has."""
    try:
        return Entry(offset, PublishedPolicy.decode(value or b""))
    except (OSError, EOFError, ValidationError, ValueError) as exc:
        log.error(
            "policy.unreadable_publication",
            offset=offset,
            error=type(exc).__name__,
            fix="only `clarion policy publish` may write to the policies topic",
        )
        return None
