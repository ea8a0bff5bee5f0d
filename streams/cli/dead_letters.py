"""`clarion dead-letters`: what was refused, and sending it again once its cause is fixed.

A dead letter keeps the message whole (key and bytes) with the reason it was
refused. Some causes are fixed outside the message: a producer's partitioner
(`wrong_partition`: the same bytes, sent with Kafka's default partitioner, go
to the customer's partition), a state the broker would not save
(`internal_error`), a schema version a newer worker now reads. For those,
sending the original again is the repair, and intake's dedupe and the
deterministic notification ids make a second replay harmless.

A letter too large to keep whole (`truncated`) points to its original: the
replay reads it back from its topic, partition and offset, checks it against
the letter's SHA-256, and sends that. One the broker no longer holds is named
and skipped.
"""

from __future__ import annotations

from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.dead_letters import DeadLetter
from streams.cli import timeline
from streams.kafka import topics
from streams.runtime import security
from streams.runtime.settings import Settings


async def read_letters(settings: Settings, code: str | None = None) -> list[DeadLetter]:
    """Every dead letter the broker still keeps, oldest first per partition; `code` filters."""
    name = settings.topic(topics.DEAD_LETTERS)
    async with topics.connected(settings, AIOKafkaConsumer) as consumer:
        parts = await topics.partitions_of(consumer, name)
        options = security.for_settings(settings)
        found = await topics.read_to_end(consumer, settings.kafka_bootstrap, parts, options)
    letters = [DeadLetter.model_validate_json(value) for tp in parts for _, value in found[tp]]
    return [letter for letter in letters if code is None or letter.code == code]


async def send_again(settings: Settings, letters: list[DeadLetter]) -> tuple[int, list[str]]:
    """Each letter's original key and bytes to its original topic, partitioned by the key.

    Returns how many were sent, and why each of the others could not be."""
    originals, missing = await _originals(settings, letters)
    async with topics.connected(settings, AIOKafkaProducer) as producer:
        for key, value, topic in originals:
            await producer.send(topic, value, key=key)
        await producer.flush()
    return len(originals), missing


async def _originals(
    settings: Settings, letters: list[DeadLetter]
) -> tuple[list[tuple[bytes | None, bytes, str]], list[str]]:
    """(key, value, topic) of each letter's original: from the letter, or read back."""
    found: list[tuple[bytes | None, bytes, str]] = []
    missing: list[str] = []
    whole = [letter for letter in letters if not letter.truncated]
    found += [(letter.original_key(), letter.original_value(), letter.topic) for letter in whole]
    cut = [letter for letter in letters if letter.truncated]
    if not cut:
        return found, missing
    async with topics.connected(settings, AIOKafkaConsumer) as consumer:
        for letter in cut:
            where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
            tp = TopicPartition(letter.topic, letter.partition)
            record = await topics.read_at(consumer, tp, letter.offset)
            if record is None or not letter.matches(record[1]):
                missing.append(f"{where}: the broker no longer holds the original")
                continue
            found.append((record[0], record[1], letter.topic))
    return found, missing


def summary(letters: list[DeadLetter]) -> str:
    """How many by code, then each letter: where it was and why it was refused."""
    if not letters:
        return "no dead letters\n"
    counts = Counter(letter.code for letter in letters)
    lines = [f"{len(letters)} dead letters: " + ", ".join(f"{c} {n}" for c, n in counts.items())]
    lines += [
        f"  {letter.received_at:%Y-%m-%d %H:%MZ}  {timeline.refused(letter)}" for letter in letters
    ]
    return "\n".join(lines) + "\n"
