"""A message on a partition other than its customer's is forwarded there, never split off.

Every topic is keyed by customer_id and co-partitioned, so a customer's state
lives on the partition Kafka's default partitioner (murmur2) gives the key;
Clarion's own messages (receipts, preference updates, SMS replies) go there. A
producer with another partitioner (librdkafka's default is CRC32) puts a
customer's events elsewhere, where deciding on them would split the customer
in two: a STOP recorded on one state and not seen by the other. Intake forwards
such a message to its customer's partition, in order, and it is decided there
once (issue 19). With `CLARION_STRICT_PARTITIONING=true` intake dead-letters it
instead, with a reason that names the fix; once the producer is fixed,
`clarion dead-letters --code wrong_partition --replay` sends it again, to the
right partition.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import confluent_kafka
import pytest
from aiokafka import AIOKafkaProducer

from policies.loader import load_directory
from policies.simulator import simulate
from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from schemas.events import event_from_dict
from streams.app import EXAMPLE_POLICIES
from streams.cli.demo import (
    advance_clock,
    horizon,
    read_lines,
    settings_env,
    settle,
    start_worker,
    stop_worker,
)
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import STORIES, Broker, metrics, run_settings

pytestmark = pytest.mark.integration


def test_librdkafkas_default_partitioner_gives_the_decisions_murmur2_gives(
    on_both: Broker, tmp_path: Path
) -> None:
    """The reference stories from confluent-kafka with its default partitioner (CRC32 of
    the key): 8 of the 10 customers land off their partition, are forwarded, and the
    pipeline decides what `policy simulate` does (as it does for a murmur2 producer)."""
    settings = run_settings(on_both.bootstrap, tmp_path, "rdk", partitions=4, **on_both.settings)
    lines = read_lines(STORIES)
    source = settings.topic(topics.ACCOUNT_EVENTS)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            producer = confluent_kafka.Producer({"bootstrap.servers": settings.kafka_bootstrap})
            for line in lines:
                key = json.loads(line)["customer_id"].encode()
                producer.produce(source, value=line.encode(), key=key)
            assert producer.flush(30) == 0
            alive = lambda: worker.poll() is None  # noqa: E731
            decisions, letters = asyncio.run(settled(settings, alive))
            scraped = metrics(settings.web_port)
        finally:
            stop_worker(worker)
    assert letters == []
    events = [event_from_dict(json.loads(line)) for line in lines]
    simulated, _ = simulate(events, load_directory(EXAMPLE_POLICIES), horizon([STORIES]))
    got, want = compared(decisions), compared(simulated)
    assert [g for g in got if g not in want] == [w for w in want if w not in got]
    assert got == want
    off_home = {
        json.loads(line)["customer_id"]
        for line in lines
        if zlib.crc32(json.loads(line)["customer_id"].encode()) % 4
        != topics.home_partition(json.loads(line)["customer_id"].encode(), 4)
    }
    assert len(off_home) == 8
    forwarded = sum(1 for line in lines if json.loads(line)["customer_id"] in off_home)
    assert scraped[f'clarion_inputs_total{{topic="{source}",outcome="forwarded"}}'] == forwarded
    said = [
        json.loads(line)
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if '"input.forwarded"' in line
    ]
    sources = {
        json.loads(line)["source"] for line in lines if json.loads(line)["customer_id"] in off_home
    }
    assert sorted(s["source"] for s in said) == sorted(sources), "once per producer"
    assert all("partitioner=murmur2_random" in s["fix"] for s in said)


async def settled(
    settings: Settings, alive: Callable[[], bool]
) -> tuple[list[Decision], list[DeadLetter]]:
    """As the demo waits: everything consumed, the clock moved to the stories' horizon."""
    await settle(settings, 60, alive)
    until = horizon([STORIES])
    assert until is not None
    await advance_clock(settings, until)
    return await settle(settings, 60, alive)


def compared(decisions: list[Decision]) -> list[tuple[str, ...]]:
    """What the engine decided, as `policy simulate` and the demo test compare it."""
    kinds = ("opened", "sent", "suppressed", "handoff", "stopped", "deferred", "paused", "resumed")
    return sorted(
        (d.at.isoformat(), d.customer_id, d.action, str(d.channel), str(d.template), d.reason)
        for d in decisions
        if d.action in kinds
    )


def test_an_event_off_its_customers_partition_is_dead_lettered_when_strict_then_replayed(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = run_settings(
        broker.bootstrap, tmp_path, "part", partitions=3, strict_partitioning=True
    )
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
