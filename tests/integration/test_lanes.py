"""Lanes: a fraud alert is not dispatched after a backlog of other messages (issue 23).

A thousand customers miss a payment at once: two thousand emails at the
provider's rate (10 a second here, so the backlog takes over three minutes to
drain). Then one customer's card is used suspiciously. The fraud alert's email
must be handed to the provider while nearly all of the backlog still waits:
counted in the order the provider took the messages, not timed. Once on the
urgent topic, as a producer that can choose one sends it; once on
`account-events`, as one that cannot, with the router on.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from channels.sandbox import read_outbox
from schemas.decisions import Decision
from streams.cli.demo import start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import metrics, run_settings, wait_ready

pytestmark = pytest.mark.integration

BACKLOG = 1000
"""Customers with a missed payment: two emails each (the reminder and the validation notice)."""
AHEAD = 0.1
"""The share of the backlog that may go before the fraud alert: a second of the rate and
its burst, with room for a slow machine; without lanes it waits for about half."""


def _events() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    profiles, missed = [], []
    for n in range(BACKLOG + 1):
        cid = f"C-{n:04d}"
        profiles.append(
            samples.event(
                "customer.profile.updated",
                customer_id=cid,
                account_id=None,
                event_id=f"p-{cid}",
                occurred_at="2026-11-20T14:59:00Z",
            )
        )
        if n < BACKLOG:
            missed.append(
                samples.event(
                    "payment.missed",
                    customer_id=cid,
                    account_id=f"A-{n}",
                    event_id=f"m-{cid}",
                    occurred_at="2026-11-20T15:00:00Z",
                )
            )
    fraud = samples.event(
        "fraud.suspected",
        customer_id=f"C-{BACKLOG:04d}",
        account_id="A-F",
        event_id="fraud-1",
        occurred_at="2026-11-20T15:00:05Z",
    )
    return profiles, missed, fraud


async def _produce(settings: Settings, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topic(topic),
                json.dumps(e).encode(),
                key=str(e["customer_id"]).encode(),
            )
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _router_running(settings: Settings) -> None:
    """Until the router copies an event: it starts its group at the end of the topic, so
    what is produced before it is assigned is not copied (and is decided in its place)."""
    probe = samples.event("fraud.suspected", customer_id="C-PROBE", event_id="fraud-probe")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        asyncio.run(_produce(settings, topics.ACCOUNT_EVENTS, [probe]))
        time.sleep(0.5)
        if metrics(settings.web_port).get('clarion_lanes_routed_total{type="fraud.suspected"}'):
            return
    raise AssertionError("the router copied nothing in 30 s")


def _emails_before_fraud(outbox: Path, timeout_s: float = 90) -> tuple[int, int]:
    """(backlog emails the provider took before the fraud alert's email, all taken so far)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        emails = [
            m
            for m in read_outbox(outbox)
            if m["channel"] == "email" and m["customer_id"] != "C-PROBE"
        ]
        for n, message in enumerate(emails):
            if message["customer_id"] == f"C-{BACKLOG:04d}":
                return n, len(emails)
        time.sleep(0.2)
    raise AssertionError(f"no fraud alert in {timeout_s} s; {len(emails)} emails sent")


@pytest.mark.parametrize("producer_topic", ["urgent", "by_type"])
def test_a_fraud_alert_goes_before_a_backlog_drains(
    broker: EmbeddedBroker, tmp_path: Path, producer_topic: str
) -> None:
    settings = run_settings(
        broker.bootstrap,
        tmp_path,
        "lanes",
        rate_email_per_s=10.0,
        lanes_route_by_type=producer_topic == "by_type",
    )
    profiles, missed, fraud = _events()
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            wait_ready(settings, worker)
            if producer_topic == "by_type":
                _router_running(settings)
            asyncio.run(_produce(settings, topics.CUSTOMER_PROFILES, profiles))
            # Known customers: an urgent event may be applied before what is behind it on
            # the other lane, a profile included (docs/operations.md, "Lanes").
            profiles_topic = settings.topic(topics.CUSTOMER_PROFILES)
            asyncio.run(
                topics.wait_until_consumed(
                    settings.kafka_bootstrap, settings.app_id, [profiles_topic], timeout=60
                )
            )
            asyncio.run(_produce(settings, topics.ACCOUNT_EVENTS, missed))
            if producer_topic == "urgent":
                asyncio.run(_produce(settings, topics.ACCOUNT_EVENTS_URGENT, [fraud]))
            else:
                asyncio.run(_produce(settings, topics.ACCOUNT_EVENTS, [fraud]))
            ahead, taken = _emails_before_fraud(settings.outbox_path)
        finally:
            stop_worker(worker)
    print(f"lanes ({producer_topic}): {ahead} of {2 * BACKLOG} backlog emails went first")
    assert ahead < AHEAD * 2 * BACKLOG
    assert taken < 2 * BACKLOG, "the backlog drained first"
    rows = asyncio.run(topics.read_all(settings.kafka_bootstrap, settings.topic(topics.DECISIONS)))
    fraud_rows = [
        d
        for d in (Decision.model_validate_json(v) for _, v in rows)
        if d.cause_event_id == "fraud-1" and d.action in ("opened", "sent")
    ]
    assert sorted(d.action for d in fraud_rows).count("opened") == 1  # once, whichever copy
