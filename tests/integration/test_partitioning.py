"""A message on a partition other than its customer's is refused, not split off.

Every topic is keyed by customer_id and co-partitioned, so a customer's state
lives on the partition Kafka's default partitioner (murmur2) gives the key;
Clarion's own messages (receipts, preference updates, SMS replies) go there. A
producer with another partitioner (librdkafka's default is CRC32) would put a
customer's events elsewhere, and decisions would be taken on a second, partial
state: a STOP recorded on one and not seen by the other. Intake dead-letters
such a message with a reason that names the fix.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from streams import topics
from streams.broker import EmbeddedBroker
from streams.demo import start_worker, stop_worker
from streams.settings import Settings
from tests import samples
from tests.conftest import run_settings

pytestmark = pytest.mark.integration


def test_an_event_off_its_customers_partition_is_dead_lettered(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = run_settings(broker.bootstrap, tmp_path, "part", partitions=3)
    profile = samples.event("customer.profile.updated", account_id=None)
    large = samples.event("transaction.large", account_id="A-1")
    customer = profile["customer_id"]
    assert large["customer_id"] == customer
    home = topics.home_partition(customer.encode(), settings.partitions)
    elsewhere = (home + 1) % settings.partitions
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)  # type: ignore[arg-type]
        try:
            asyncio.run(send(settings, [(profile, None), (large, elsewhere), ({**large}, home)]))
            letters, sent = wait(settings, timeout=60)
        finally:
            stop_worker(worker)
    [letter] = letters
    assert (letter.code, letter.partition) == ("wrong_partition", elsewhere)
    assert f"belongs on partition {home} of 3" in letter.reason
    assert "partitioner=murmur2_random" in letter.reason
    assert json.loads(letter.original_value()) == large
    # The same event on its home partition is taken, once: the refused copy left no trace.
    assert [(d.customer_id, d.cause_event_id) for d in sent] == [(customer, large["event_id"])]


async def send(settings: Settings, messages: list[tuple[dict[str, object], int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for event, partition in messages:
            key, value = str(event["customer_id"]).encode(), json.dumps(event).encode()
            topic = settings.topic(topics.ACCOUNT_EVENTS)
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def wait(settings: Settings, timeout: float) -> tuple[list[DeadLetter], list[Decision]]:
    """The dead letters and sent decisions, once there is at least one of each."""
    bootstrap, deadline = settings.kafka_bootstrap, time.monotonic() + timeout
    while True:
        letters = asyncio.run(topics.read_all(bootstrap, settings.topic(topics.DEAD_LETTERS)))
        rows = asyncio.run(topics.read_all(bootstrap, settings.topic(topics.DECISIONS)))
        sent = [Decision.model_validate_json(v) for _, v in rows]
        sent = [d for d in sent if d.action == "sent"]
        if (letters and sent) or time.monotonic() > deadline:
            return [DeadLetter.model_validate_json(v) for _, v in letters], sent
        time.sleep(0.5)
