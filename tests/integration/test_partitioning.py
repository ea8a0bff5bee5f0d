"""A message on a partition other than its customer's is refused, not split off.

Every topic is keyed by customer_id and co-partitioned, so a customer's state
lives on the partition Kafka's default partitioner (murmur2) gives the key;
Clarion's own messages (receipts, preference updates, SMS replies) go there. A
producer with another partitioner (librdkafka's default is CRC32) would put a
customer's events elsewhere, and decisions would be taken on a second, partial
state: a STOP recorded on one and not seen by the other. Intake dead-letters
such a message with a reason that names the fix; once the producer is fixed,
`clarion dead-letters --code wrong_partition --replay` sends it again, to the
right partition.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from streams.cli.demo import settings_env, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import run_settings

pytestmark = pytest.mark.integration


def test_an_event_off_its_customers_partition_is_dead_lettered_then_replayed(
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
        worker = start_worker(settings, log)
        try:
            asyncio.run(send(settings, [(profile, None), (large, elsewhere)]))
            letters, sent = wait(settings, lambda letters, sent: bool(letters))
            [letter] = letters
            assert (letter.code, letter.partition) == ("wrong_partition", elsewhere)
            assert f"belongs on partition {home} of 3" in letter.reason
            assert "partitioner=murmur2_random" in letter.reason
            assert json.loads(letter.original_value()) == large
            assert letter.original_key() == customer.encode()
            assert sent == []  # refused: nothing decided on the wrong partition's state

            listed = clarion(settings, "dead-letters")
            assert listed.stdout.startswith("1 dead letters: wrong_partition 1\n")
            assert clarion(settings, "dead-letters", "--replay").returncode == 2  # needs --code
            # The producer is fixed: the refused message goes again, to its customer's partition.
            for _ in range(2):  # twice: the second is a duplicate and changes nothing
                replayed = clarion(
                    settings, "dead-letters", "--code", "wrong_partition", "--replay"
                )
                assert replayed.stdout == "sent 1 wrong_partition dead letters again\n"
            letters, sent = wait(settings, lambda letters, sent: bool(sent))
            inputs = [settings.topic(t) for t in topics.INPUTS]
            asyncio.run(
                topics.wait_until_consumed(
                    settings.kafka_bootstrap, settings.app_id, inputs, timeout=30
                )
            )
            letters, sent = wait(settings, lambda letters, sent: True)
        finally:
            stop_worker(worker)
    assert len(letters) == 1  # the replays were taken, not refused again
    assert [(d.customer_id, d.cause_event_id) for d in sent] == [(customer, large["event_id"])]


def clarion(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


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


def wait(
    settings: Settings, done: Callable[[list[DeadLetter], list[Decision]], bool]
) -> tuple[list[DeadLetter], list[Decision]]:
    """The dead letters and sent decisions, once `done` says so (60 s at most)."""
    bootstrap, deadline = settings.kafka_bootstrap, time.monotonic() + 60
    while True:
        raw = asyncio.run(topics.read_all(bootstrap, settings.topic(topics.DEAD_LETTERS)))
        letters = [DeadLetter.model_validate_json(v) for _, v in raw]
        rows = asyncio.run(topics.read_all(bootstrap, settings.topic(topics.DECISIONS)))
        sent = [Decision.model_validate_json(v) for _, v in rows]
        sent = [d for d in sent if d.action == "sent"]
        if done(letters, sent):
            return letters, sent
        assert time.monotonic() < deadline, (letters, sent)
        time.sleep(0.5)
