"""`clarion ledger CUSTOMER`: one customer's audit trail, read back from the broker.

What a compliance officer needs to answer "why did you (not) message me?":
every decision the pipeline recorded for the customer, each with its reason,
and the inputs about them that were refused. Every topic is keyed by
customer_id and co-partitioned, so it all lives on one partition of each topic
(`topics.home_partition`): this reads that partition only, from the start of
what the broker still keeps, and prints it as `policy simulate` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from streams.cli import timeline
from streams.intake import stored
from streams.kafka import topics
from streams.runtime import security
from streams.runtime.settings import Settings


@dataclass(frozen=True)
class Trail:
    decisions: list[Decision]
    dead_letters: list[DeadLetter]
    zones: list[str]
    """The customer's time zones as their stored profile has them (for local times)."""


async def read_trail(settings: Settings, customer: str) -> Trail:
    key = customer.encode()
    partition = topics.home_partition(key, settings.partitions)
    keys = stored.changelog_keys(customer)
    names = (
        settings.topic(topics.DECISIONS),
        settings.topic(topics.DEAD_LETTERS),
        stored.changelog_topic(settings.app_id),
    )
    async with topics.connected(settings, AIOKafkaConsumer) as consumer:
        parts = [TopicPartition(name, partition) for name in names]
        found = await _read(settings, consumer, parts, keys)
    decisions_raw, letters_raw, states_raw = found
    decisions = [Decision.model_validate_json(v) for v in decisions_raw]
    letters = [DeadLetter.model_validate_json(v) for v in letters_raw]
    try:
        state = stored.state(states_raw[-1]) if states_raw else None
    except (ValueError, RecursionError):
        state = None  # unreadable (`clarion state show` says why): times in UTC only
    zones = list(state.profile.time_zones) if state is not None else []
    return Trail(decisions, letters, zones)


async def _read(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    parts: list[TopicPartition],
    keys: set[bytes],
) -> list[list[bytes]]:
    """Each partition's values under `keys`, oldest first, up to its end now."""
    known = set(await consumer.topics())
    options = security.for_settings(settings)
    present = [tp for tp in parts if tp.topic in known]  # a changelog not made yet, say
    found = await topics.read_to_end(consumer, settings.kafka_bootstrap, present, options)
    return [[value for key, value in found.get(tp, []) if key in keys] for tp in parts]


def render(trail: Trail, customer: str, fmt: str) -> str:
    """The trail as `policy simulate` prints decisions: a timeline, or one JSON row each."""
    if fmt == "jsonl":
        return "".join(json.dumps(timeline.row(d)) + "\n" for d in trail.decisions)
    if not trail.decisions and not trail.dead_letters:
        return f"{customer}: nothing on the ledger\n"
    return timeline.render(trail.decisions, {customer: trail.zones}, trail.dead_letters)
