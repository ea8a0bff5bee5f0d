"""A customer whose stored state an older version wrote and no longer reads: quarantined,
then repaired by an operator through the CLI, and their refused inputs replayed (issue 26)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.decisions import Decision
from streams.cli.demo import start_worker, stop_worker
from streams.intake import stored
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import Broker, run_settings
from tests.integration.test_hostile_input import send
from tests.integration.test_partitioning import clarion, wait
from tests.unit.test_repair import a_state, deep, stored_value

pytestmark = pytest.mark.integration


def test_an_unreadable_state_is_repaired_by_the_cli_and_the_refused_inputs_replayed(
    on_both: Broker, tmp_path: Path
) -> None:
    settings = run_settings(on_both.bootstrap, tmp_path, "repair", partitions=2, **on_both.settings)
    # C-1 as an older version stored them: a profile field nested 250 deep, and an opt-out
    # of SMS. C-7's state breaks a guard's record, so no repair can be proposed for it.
    asyncio.run(store(settings, "C-1", stored_value(a_state(profile__notes=deep(250)))))
    broken_cease = {**a_state(), "customer_id": "C-7", "ceases": [{"at": "yesterday"}]}
    asyncio.run(store(settings, "C-7", stored_value(broken_cease)))
    missed = samples.event("payment.missed", event_id="evt-missed", account_id="A-1")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            asyncio.run(send(settings, [missed]))
            letters, _ = wait(settings, lambda letters, _: bool(letters))
            assert [(x.code, x.key_b64) for x in letters] == [("state_unreadable", "Qy0x")]

            shown = clarion(settings, "state", "show", "C-1")
            assert shown.returncode == 0, shown.stderr
            assert "reads: no: " in shown.stdout
            assert (
                "a repair keeps the rest and leaves out:\n  - profile: its extra fields 'notes'"
                in (shown.stdout)
            )

            repaired = clarion(
                settings, "state", "repair", "C-1", "--reason", "ticket 7", "--operator", "ops"
            )
            assert repaired.returncode == 0, repaired.stderr
            assert "repaired C-1 at " in repaired.stdout
            again = clarion(settings, "state", "repair", "C-1", "--reason", "twice")
            assert again.returncode == 1
            assert "the stored state reads; nothing to repair" in again.stderr

            replayed = clarion(settings, "dead-letters", "--code", "state_unreadable", "--replay")
            assert replayed.returncode == 0, replayed.stderr
            _, sent = wait(settings, lambda _, sent: any(d.customer_id == "C-1" for d in sent))
            assert {d.channel for d in sent if d.customer_id == "C-1"} <= {"email", "voice"}, (
                "the SMS opt-out the repair kept was not honoured"
            )

            refused = clarion(settings, "state", "repair", "C-7", "--reason", "ticket 8")
            assert refused.returncode == 1
            assert "a repair cannot be proposed, because:\n  - ceases[0]: at:" in refused.stdout
            by_hand = tmp_path / "c7.json"
            raw = clarion(settings, "state", "show", "C-7", "--raw")
            fixed = json.loads(raw.stdout)["state"]
            fixed["ceases"] = [{"at": "2026-11-20T14:00:00Z", "account_id": "A-9"}]
            by_hand.write_text(json.dumps(fixed))
            written = clarion(
                settings, "state", "repair", "C-7", "--reason", "ticket 8", "--from", str(by_hand)
            )
            assert written.returncode == 0, written.stderr

            # The first repair, sent again verbatim: refused, the state untouched.
            asyncio.run(resend_repairs(settings))
            letters, _ = wait(
                settings, lambda letters, _: any(x.code == "invalid_repair" for x in letters)
            )
        finally:
            stop_worker(worker)
    assert worker.returncode == 0
    [refusal] = [x for x in letters if x.code == "invalid_repair"][:1]
    assert "has no unreadable state" in refusal.reason
    trail = clarion(settings, "ledger", "C-1", "--format", "jsonl")
    rows = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [r["action"] for r in rows][:1] == ["repaired"]
    assert rows[0]["detail"] == "ops: ticket 7"
    assert "evt-missed" in {r["cause_event_id"] for r in rows}


async def store(settings: Settings, customer: str, value: bytes) -> None:
    """What an older worker left on the customers table's changelog."""
    changelog = stored.changelog_topic(settings.app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        if changelog not in await admin.list_topics():
            await admin.create_topics([NewTopic(changelog, settings.partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        partition = topics.home_partition(customer.encode(), settings.partitions)
        key = json.dumps(customer).encode()
        await producer.send_and_wait(changelog, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def resend_repairs(settings: Settings) -> None:
    name = settings.topic(topics.STATE_REPAIRS)
    found = await topics.read_all(settings.kafka_bootstrap, name)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in found:
            if key == b"C-1":
                await producer.send_and_wait(name, value, key=key)
    finally:
        await producer.stop()


def rows_of(found: list[Decision], customer: str) -> list[str]:
    return [d.action for d in found if d.customer_id == customer]
