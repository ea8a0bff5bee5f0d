"""Issue 19: the reference stories as a bank's systems would send them, in the worst order.

Every event first on `account-events`, then, a second later, every profile on
`customer-profiles` and every preference on `preference-updates`, while the
worker runs. Intake merges the three topics in time order per partition, waiting up to
`CLARION_INPUT_ORDER_WAIT_MS` for an input topic that has nothing yet, so the
pipeline decides what `policy simulate` does on the stories in time order.
Once with aiokafka, once with librdkafka (confluent-kafka, murmur2_random).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import confluent_kafka
import pytest
from aiokafka import AIOKafkaProducer

from policies.loader import load_directory
from policies.simulator import simulate
from schemas.events import event_from_dict
from streams.app import EXAMPLE_POLICIES
from streams.cli.demo import horizon, read_lines, start_worker, stop_worker
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests.conftest import STORIES, Broker, metrics, run_settings, wait_ready
from tests.integration.test_partitioning import compared, settled

pytestmark = pytest.mark.integration

WAIT_MS = 3000
LATER_S = 1.0


def worst_order(settings: Settings) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value): the events in file order, then profiles, then preferences."""
    by_topic: dict[str, list[tuple[str, bytes, bytes]]] = {}
    for line in read_lines(STORIES):
        event = json.loads(line)
        name = {
            "customer.profile.updated": topics.CUSTOMER_PROFILES,
            "customer.preferences.updated": topics.PREFERENCE_UPDATES,
        }.get(event["type"], topics.ACCOUNT_EVENTS)
        topic = settings.topic(name)
        by_topic.setdefault(name, []).append((topic, event["customer_id"].encode(), line.encode()))
    return [m for name in (*topics.INPUTS,) for m in by_topic.get(name, [])]


async def with_aiokafka(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n, (topic, key, value) in enumerate(messages):
            if n and topic != messages[n - 1][0] and messages[n - 1][0].endswith("events"):
                await producer.flush()
                await asyncio.sleep(LATER_S)  # the profiles' system sends a moment later
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def with_librdkafka(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"}
    )
    for n, (topic, key, value) in enumerate(messages):
        if n and topic != messages[n - 1][0] and messages[n - 1][0].endswith("events"):
            assert producer.flush(30) == 0
            time.sleep(LATER_S)
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


# On Kafka with librdkafka only, the banks' client (issue 20's room under 15 minutes);
# aiokafka's producer is the one the demo and the other Kafka tests use.
@pytest.mark.parametrize(
    ("on_both", "client"),
    [("tansu", "aiokafka"), ("tansu", "librdkafka"), ("kafka", "librdkafka")],
    indirect=["on_both"],
)
def test_the_stories_in_the_worst_order_decide_as_policy_simulate(
    on_both: Broker, tmp_path: Path, client: str
) -> None:
    settings = run_settings(
        on_both.bootstrap,
        tmp_path,
        "order",
        partitions=3,
        input_order_wait_ms=WAIT_MS,
        **on_both.settings,
    )
    messages = worst_order(settings)
    assert messages[0][0].endswith(topics.ACCOUNT_EVENTS)
    assert messages[-1][0].endswith(topics.PREFERENCE_UPDATES)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            wait_ready(settings, worker)  # reading as the inputs come, not a backlog
            if client == "aiokafka":
                asyncio.run(with_aiokafka(settings, messages))
            else:
                with_librdkafka(settings, messages)
            decisions, letters = asyncio.run(settled(settings, lambda: worker.poll() is None))
            scraped = metrics(settings.web_port)
        finally:
            stop_worker(worker)
    assert letters == []
    events = [event_from_dict(json.loads(line)) for line in read_lines(STORIES)]
    simulated, _ = simulate(events, load_directory(EXAMPLE_POLICIES), horizon([STORIES]))
    got, want = compared(decisions), compared(simulated)
    assert [g for g in got if g not in want] == [w for w in want if w not in got]
    assert len([g for g in got if g[2] == "sent"]) == 27
    profiles = settings.topic(topics.CUSTOMER_PROFILES)
    assert scraped[f'clarion_inputs_total{{topic="{profiles}",outcome="accepted"}}'] == 10
