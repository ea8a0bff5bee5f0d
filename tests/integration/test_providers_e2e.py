"""The pipeline on the real broker, dispatching through the real SDKs to fake providers.

Twilio is down (503) when the first messages go out: the circuit opens, the
retries wait on their topic, and once Twilio is back every message is taken
exactly once. One customer's number replied STOP long ago (Twilio 21610): that
SMS fails for good, the engine learns it, and the step goes out by email.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from schemas.decisions import Decision
from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from tests.conftest import Broker
from tests.fakes import ProvidersThread
from tests.integration.test_pipeline import produce

pytestmark = pytest.mark.integration

SID, TOKEN, KEY = "AC" + "7" * 32, "e2e-token", "SG.e2e"
CUSTOMERS = 20
STOP_NUMBER = "+15005550004"


def events() -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    people = [(f"C-E2E-{i:02d}", f"+1312555{i:04d}") for i in range(CUSTOMERS)]
    people.append(("C-E2E-STOP", STOP_NUMBER))
    for n, (cid, phone) in enumerate(people):
        profile = {
            "phones": [{"number": phone, "type": "mobile", "sms_consent": True}],
            "emails": [{"address": f"{cid.lower()}@example.com"}],
            "time_zones": ["America/Chicago"],
        }
        large = {
            "transaction_id": f"T-{n}",
            "amount": "3200.00",
            "currency": "USD",
            "merchant": "Electronics Ltd",
            "country": "GB",
        }
        for i, (kind, account, data) in enumerate(
            [("customer.profile.updated", None, profile), ("transaction.large", "A-1", large)]
        ):
            event = {
                "event_id": f"e2e-{n}-{i}",
                "type": kind,
                "schema_version": 1,
                "occurred_at": f"2026-11-20T15:00:0{i}Z",
                "customer_id": cid,
                "account_id": account,
                "source": "test",
                "data": data,
            }
            out.append((cid.encode(), json.dumps(event).encode()))
    return out


def ledger(bootstrap: str, topic: str) -> list[Decision]:
    rows = asyncio.run(topics.read_all(bootstrap, topic))
    return [Decision.model_validate_json(v) for _, v in rows]


# Tansu only: the providers' outage is the broker's business in no way (issue 20's room).
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_an_outage_then_recovery_delivers_each_message_once_and_stop_falls_back(
    on_both: Broker, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    with ProvidersThread(SID, TOKEN, KEY) as fakes:
        settings = demo_settings(
            on_both.bootstrap,
            tmp_path,
            app_id=f"clarion-prov-{run}",
            topic_prefix=f"prov{run}.",
            log_format="json",
            **on_both.settings,
            **fakes.channel_settings(),
            twilio_status_callback_url="https://hooks.example.com/twilio/status",
            retry_base_s=0.3,
            retry_max_s=1.0,
            breaker_failures=3,
            breaker_cooldown_s=1.0,
        )
        asyncio.run(topics.ensure_topics(settings))
        fakes.twilio.behaviour.outage_status = 503
        behaviour = fakes.twilio.behaviour
        recover = threading.Timer(6.0, lambda: setattr(behaviour, "outage_status", None))
        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            worker = start_worker(settings, log)
            try:
                asyncio.run(produce(settings, events()))
                recover.start()
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and (
                    len(fakes.twilio.accepted) < CUSTOMERS or not fakes.sendgrid.accepted
                ):
                    assert worker.poll() is None, log_path.read_text()[-3000:]
                    time.sleep(0.25)
                time.sleep(2.0)  # anything that would be a duplicate has time to show up
            finally:
                recover.cancel()
                stop_worker(worker)

    sms = [
        parse_qs(urlsplit(m["StatusCallback"]).query)["notification_id"][0]
        for m in fakes.twilio.accepted
        if m["kind"] == "SM"
    ]
    assert len(sms) == CUSTOMERS, "every SMS taken once the provider recovered"
    assert max(Counter(sms).values()) == 1, "no SMS taken twice"
    numbers = {f"+1312555{i:04d}" for i in range(CUSTOMERS)}
    assert {m["To"] for m in fakes.twilio.accepted} == numbers

    [email] = fakes.sendgrid.accepted
    assert email["custom_args"]["customer_id"] == "C-E2E-STOP"

    text = log_path.read_text()
    assert '"why": "circuit_open"' in text, "the circuit opened during the outage"
    rows = ledger(on_both.bootstrap, settings.topic(topics.DECISIONS))
    stop = [(d.action, d.reason, d.channel) for d in rows if d.customer_id == "C-E2E-STOP"]
    assert ("failed", "recipient_opted_out", "sms") in stop
    assert ("sent", "fallback", "email") in stop
    assert ("dispatched", "channel_accepted", "email") in stop
    retried = [d for d in rows if d.action == "failed" and d.reason == "twilio_503"]
    assert retried, "the outage is in the ledger, attempt by attempt"
