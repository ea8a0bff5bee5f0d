"""The pipeline on Apache Kafka 4.1 itself (issue 20, first part): one KRaft node from
Maven Central's jars (tests/apache_kafka), a real worker, and the CLI's readers.

Four things worked on Tansu and not on Kafka, each fixed and exercised here:
topics described right after they were created had no partitions yet
(`ensure_topics` now waits for them); a consumer stopped right after it started
raised CancelledError (aiokafka issue 647; `topics.stop_client`); a consumer
knew no partitions of a topic it did not follow (`topics.partitions_of`); and
the demo's 2 s session timeout is under Kafka's 6 s minimum (the worker here
runs with 6 s).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests import samples
from tests.apache_kafka import ApacheKafka
from tests.conftest import KAFKA_SETTINGS, Broker
from tests.integration.test_hostile_input import causes, send
from tests.integration.test_partitioning import clarion, wait

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka(apache_kafka: ApacheKafka) -> ApacheKafka:
    return apache_kafka


def kafka_settings(kafka: ApacheKafka, tmp_path: Path, name: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return demo_settings(
        kafka.bootstrap,
        tmp_path,
        app_id=f"clarion-{name}-{run}",
        topic_prefix=f"{name}{run}.",
        log_format="json",
        **KAFKA_SETTINGS,
    )


def test_a_worker_and_the_cli_readers_on_apache_kafka(kafka: ApacheKafka, tmp_path: Path) -> None:
    settings = kafka_settings(kafka, tmp_path, "ak")
    asyncio.run(topics.ensure_topics(settings))  # reads the partitions it just made
    asyncio.run(topics.ensure_topics(settings))  # and finds them the second time
    profile = samples.event("customer.profile.updated", account_id=None)
    large = samples.event("transaction.large", event_id="evt-large", account_id="A-1")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            asyncio.run(send(settings, [profile, b"{not json", large]))
            letters, sent = wait(settings, lambda letters, sent: bool(letters) and bool(sent))
            listed = clarion(settings, "dead-letters")
            ledger = clarion(settings, "ledger", "C-1", "--format", "jsonl")
        finally:
            stop_worker(worker)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert [letter.code for letter in letters] == ["invalid_json"]
    assert causes(sent) == {"evt-large"}
    assert (listed.returncode, listed.stdout.splitlines()[0]) == (
        0,
        "1 dead letters: invalid_json 1",
    ), listed.stderr
    rows = [json.loads(line) for line in ledger.stdout.splitlines()]
    assert ledger.returncode == 0 and any(r.get("action") == "sent" for r in rows), ledger

    # Idempotence: asked of the broker, granted, and the ledger's partition shows the
    # worker's producer id (a producer without one is not listed).
    lines = (tmp_path / "worker.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]  # Faust's are not
    [asked] = [line for line in logged if line.get("event") == "producer.idempotence"]
    assert (asked["enabled"], asked["setting"]) == (True, "auto")
    partition = topics.home_partition(b"C-1", settings.partitions)
    producers = kafka.tool(
        "org.apache.kafka.tools.TransactionsCommand",
        "describe-producers",
        "--topic",
        settings.topic(topics.DECISIONS),
        "--partition",
        str(partition),
    )
    header, *rows = producers.strip().splitlines()
    assert header.split()[0] == "ProducerId" and rows, producers
    assert all(int(row.split()[0]) >= 0 for row in rows), producers

    # What the broker holds of the topics' configs: the ledger kept for good, the
    # tables' changelogs compacted.
    ledger = [settings.topic(topics.DECISIONS), settings.topic(topics.DEAD_LETTERS)]
    configs = asyncio.run(topic_configs(settings, [*ledger, *changelogs(settings)]))
    for name in ledger:
        assert configs[name]["retention.ms"] == "-1", name
    for name in changelogs(settings):
        assert configs[name]["cleanup.policy"] == "compact", name
    # What Faust names after the app id, beside Clarion's prefixed topics (docs/deploy.md's
    # ACLs): the changelogs and the group's leader topic.
    made = {name for name in asyncio.run(topic_names(settings)) if name.startswith(settings.app_id)}
    assert made == {*changelogs(settings), f"{settings.app_id}-__assignor-__leader"}


def changelogs(settings: Settings) -> list[str]:
    tables = ("customers", "seen-event-ids", "dispatched-ids", "sms-numbers")
    return [f"{settings.app_id}-{table}-changelog" for table in tables]


async def topic_configs(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        found: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for _code, _message, _type, name, entries in response.resources:
                found[name] = {entry[0]: entry[1] for entry in entries}
        return found
    finally:
        await admin.close()


async def topic_names(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names: list[str] = await admin.list_topics()
        return names
    finally:
        await admin.close()


def test_the_broker_is_asked_whether_it_grants_producer_ids(on_both: Broker) -> None:
    settings = Settings(kafka_bootstrap=on_both.bootstrap)
    assert asyncio.run(topics.grants_producer_ids(settings)) is (on_both.name == "kafka")


def test_a_topic_the_broker_refuses_stops_the_worker_naming_why(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka, tmp_path, "rf").model_copy(update={"replication_factor": 3})
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        assert worker.wait(60) == 2
    said = (tmp_path / "worker.log").read_text()
    assert "clarion worker: the broker would not create topic rf" in said, said[-2000:]
    assert "replication factor" in said.lower() and "Traceback" not in said


def test_existing_topics_are_not_logged_as_created(
    kafka: ApacheKafka, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = kafka_settings(kafka, tmp_path, "again")
    asyncio.run(topics.ensure_topics(settings))
    assert capsys.readouterr().out.count("topic.created") == len(topics.CREATED)
    asyncio.run(topics.ensure_topics(settings))
    assert "topic.created" not in capsys.readouterr().out
