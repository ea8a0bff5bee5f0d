"""`clarion ledger CUSTOMER` reads one customer's trail back from a running pipeline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams.cli.demo import settings_env, settle, start_worker, stop_worker
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import Broker, run_settings

pytestmark = pytest.mark.integration


# Tansu only: `clarion ledger` on Kafka is read in test_apache_kafka.py.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_the_ledger_explains_one_customer_and_only_that_one(
    on_both: Broker, tmp_path: Path
) -> None:
    settings = run_settings(on_both.bootstrap, tmp_path, "ledger", partitions=3, **on_both.settings)
    ana, ben = "C-L1", "C-L2"
    messages = [
        samples.event(kind, customer_id=who, event_id=f"{who}-{kind}", account_id=account)
        for who in (ana, ben)
        for kind, account in [
            ("customer.profile.updated", None),
            ("transaction.large", "A-1"),
            ("offer.available", None),
        ]
    ]
    naive = samples.event("payment.missed", customer_id=ana, occurred_at="2026-11-20T14:00:00")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            asyncio.run(produce(settings, [*messages, naive]))
            decisions, _ = asyncio.run(settle(settings, 60, lambda: worker.poll() is None))
        finally:
            stop_worker(worker)

    table = ledger(settings, ana, "table")
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert out.startswith(f"{ana}  (America/Chicago)\n")  # the zone from the stored profile
    assert "opened     large-transaction / verify  (by transaction.large)" in out
    assert "sent       sms   confirm-transaction  -> +*********01" in out
    assert "suppressed offer  (opt_in_required" in out
    assert "dead-letters (1)" in out and "naive_timestamp" in out
    assert ben not in out

    rows = ledger(settings, ana, "jsonl").stdout.splitlines()
    mine = [d for d in decisions if d.customer_id == ana]
    assert len(rows) == len(mine) >= 4  # opened, sent, dispatched, suppressed, ...
    assert {json.loads(row)["customer_id"] for row in rows} == {ana}

    nobody = ledger(settings, "C-NOBODY", "table")
    assert (nobody.returncode, nobody.stdout) == (0, "C-NOBODY: nothing on the ledger\n")


def ledger(settings: Settings, customer: str, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "ledger", customer, "--format", fmt],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def produce(settings: Settings, events: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            key = str(event["customer_id"]).encode()
            topic = settings.topic(topics.ACCOUNT_EVENTS)
            await producer.send(topic, json.dumps(event).encode(), key=key)
        await producer.flush()
    finally:
        await producer.stop()
