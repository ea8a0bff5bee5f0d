"""The topics a worker makes at start-up: names, partitions, and how long the ledger lasts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from streams.cli.demo import demo_settings
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings

pytestmark = pytest.mark.integration


def fresh(broker: EmbeddedBroker, tmp_path: Path, **overrides: object) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return demo_settings(broker.bootstrap, tmp_path, topic_prefix=prefix, **overrides)


def test_the_audit_topics_are_kept_forever_unless_told(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    forever = fresh(broker, tmp_path)
    asyncio.run(topics.ensure_topics(forever))
    kept = asyncio.run(retention(forever))
    assert kept[forever.topic(topics.DECISIONS)] == "-1"
    assert kept[forever.topic(topics.DEAD_LETTERS)] == "-1"
    assert kept[forever.topic(topics.NOTIFICATIONS_OUTBOUND)] is None  # the broker's default

    ten_years = fresh(broker, tmp_path, ledger_retention_days=3653)
    asyncio.run(topics.ensure_topics(ten_years))
    assert asyncio.run(retention(ten_years))[ten_years.topic(topics.DECISIONS)] == str(
        3653 * 86_400_000
    )


def test_a_ledger_that_already_keeps_less_is_reported_not_changed(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = fresh(broker, tmp_path)
    week = str(7 * 86_400_000)
    asyncio.run(create(settings, topics.DECISIONS, {"retention.ms": week}))
    with capture_logs() as logs:
        asyncio.run(topics.ensure_topics(settings))
    [warning] = [e for e in logs if e["event"] == "topic.retention_shorter"]
    assert warning["topic"] == settings.topic(topics.DECISIONS)
    assert (warning["retention_days"], warning["wanted_days"]) == (7, "forever")
    assert warning["log_level"] == "warning"
    assert asyncio.run(retention(settings))[settings.topic(topics.DECISIONS)] == week

    with capture_logs() as logs:  # told a week is what is meant: nothing to say
        asyncio.run(topics.ensure_topics(settings.model_copy(update={"ledger_retention_days": 7})))
    assert not [e for e in logs if e["event"] == "topic.retention_shorter"]


def test_a_topic_with_another_partition_count_stops_the_start(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = fresh(broker, tmp_path, partitions=3)
    asyncio.run(create(settings, topics.ACCOUNT_EVENTS, {}, partitions=2))
    with pytest.raises(topics.TopicLayoutError, match="has 2 partitions but CLARION_PARTITIONS"):
        asyncio.run(topics.ensure_topics(settings))


async def create(
    settings: Settings, name: str, configs: dict[str, str], partitions: int | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        count = partitions or settings.partitions
        await admin.create_topics([NewTopic(settings.topic(name), count, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def retention(settings: Settings) -> dict[str, str | None]:
    """Each Clarion topic's retention.ms as the broker reports it (None: not set on it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [settings.topic(name) for name in topics.ALL]
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        found: dict[str, str | None] = {}
        for response in await admin.describe_configs(resources):
            for _code, _message, _type, name, entries in response.resources:
                found[name] = next((e[1] for e in entries if e[0] == "retention.ms"), None)
        return found
    finally:
        await admin.close()
