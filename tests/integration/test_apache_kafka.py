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

from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests import samples
from tests.apache_kafka import ApacheKafka
from tests.conftest import KAFKA_SETTINGS
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
