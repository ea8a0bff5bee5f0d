"""What comes back in, on the real broker: signed webhooks, SMS replies, SendGrid events.

One worker sends through the real SDKs to the fake providers; the test then
plays the providers' side of the conversation, signing every request as
Twilio and SendGrid do (the real `RequestValidator`, a fresh ECDSA key pair).
The worker sits behind an imaginary proxy: signatures are made for the public
URL in settings, and the requests go to the worker's loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from schemas.decisions import Decision
from streams import topics
from streams.broker import EmbeddedBroker
from streams.demo import demo_settings, start_worker, stop_worker
from streams.settings import Settings
from streams.timers import clock_message
from tests import samples
from tests.conftest import POLICIES
from tests.fakes import ProvidersThread
from tests.integration.test_pipeline import produce

pytestmark = pytest.mark.integration

SID, TOKEN, KEY = "AC" + "8" * 32, "inbound-token", "SG.inbound"
PUBLIC = "https://hooks.bank.example/clarion"

POLICY = """
version: 1
default_locale: en
contact_windows:
  default: {start: "08:00", end: "21:00"}
categories:
  service: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
  fraud: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
escalations:
  due-soon:
    trigger: payment.due_soon
    category: service
    ladders:
      - name: twice
        steps:
          - {after: 0m, send: {channel: sms, template: payment-due-soon, fallback: [email]}}
          - {after: 1h, send: {channel: sms, template: payment-due-soon, fallback: [email]}}
  missed:
    trigger: payment.missed
    category: service
    ladders:
      - name: twice
        steps:
          - {after: 0m, send: {channel: email, template: payment-missed}}
          - {after: 1h, send: {channel: email, template: payment-missed, fallback: [sms]}}
  large-transaction:
    trigger: transaction.large
    category: fraud
    stop_on: [transaction.confirmed, transaction.rejected]
    ladders:
      - name: verify
        steps:
          - {after: 0m, send: {channel: sms, template: confirm-transaction}}
          - {after: 15m, send: {channel: voice, template: confirm-transaction-call}}
"""

PEOPLE = {  # customer -> (number, email, the event that opens their case)
    "C-STOP": ("+13125550301", "stop@example.com", "payment.due_soon"),
    "C-YES": ("+13125550302", "yes@example.com", "transaction.large"),
    "C-BOUNCE": ("+13125550303", "bounce@example.com", "payment.missed"),
}


@dataclass
class Running:
    settings: Settings
    fakes: ProvidersThread
    signing_key: ec.EllipticCurvePrivateKey
    log: Path
    worker: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async def go() -> tuple[int, str]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(self.base + path, data=body, headers=headers) as answer,
            ):
                return answer.status, await answer.text()

        return asyncio.run(go())

    def twilio(
        self, path: str, form: dict[str, str], *, sign_url: str | None = None, sign: bool = True
    ) -> tuple[int, str]:
        """POST a form as Twilio does, signed for the public URL (or another, to test refusal)."""
        url = sign_url or PUBLIC + path
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if sign:
            headers["X-Twilio-Signature"] = RequestValidator(TOKEN).compute_signature(url, form)
        return self.post(path, urlencode(form).encode(), headers)

    def sendgrid(
        self, events: list[dict[str, Any]], *, age_s: float = 0, tamper: bool = False
    ) -> tuple[int, str]:
        body = json.dumps(events)
        stamp = str(int(time.time() - age_s))
        signature = self.signing_key.sign((stamp + body).encode(), ec.ECDSA(hashes.SHA256()))
        if tamper:
            body = body.replace("delivered", "bounce")
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        return self.post("/webhooks/sendgrid/events", body.encode(), headers)

    def read(self, name: str) -> list[bytes]:
        bootstrap, topic = self.settings.kafka_bootstrap, self.settings.topic(name)
        rows = asyncio.run(topics.read_all(bootstrap, topic))
        return [value for _, value in rows]

    def ledger(self) -> list[Decision]:
        return [Decision.model_validate_json(v) for v in self.read(topics.DECISIONS)]

    def until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.worker.poll() is None, "the worker died\n" + self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}\n" + (self.log.read_text()[-3000:])
            )
            time.sleep(0.3)


@pytest.fixture(scope="module")
def running(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("inbound")
    (workdir / "policies").mkdir()
    (workdir / "policies" / "policy.yaml").write_text(POLICY)
    key = ec.generate_private_key(ec.SECP256R1())
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    run = uuid.uuid4().hex[:8]
    with ProvidersThread(SID, TOKEN, KEY) as fakes:
        settings = demo_settings(
            broker.bootstrap,
            workdir,
            app_id=f"clarion-in-{run}",
            topic_prefix=f"in{run}.",
            log_format="json",
            policies_dir=workdir / "policies",
            templates_dir=POLICIES / "templates",
            channel_sms="twilio",
            channel_voice="twilio",
            channel_email="sendgrid",
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
            twilio_sms_from="+15550000000",
            twilio_voice_from="+15550000001",
            twilio_api_base=fakes.twilio.url,
            sendgrid_api_key=KEY,
            sendgrid_from_email="alerts@bank.example",
            sendgrid_host=fakes.sendgrid.url,
            sendgrid_unsubscribe_groups="service=4242",
            public_url=PUBLIC,
            sendgrid_webhook_public_key=base64.b64encode(public_der).decode(),
            sendgrid_webhook_tolerance_s=300,
            sms_help_text="Bank alerts. Reply STOP to opt out.",
        )
        asyncio.run(topics.ensure_topics(settings))
        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            worker = start_worker(settings, log)  # type: ignore[arg-type]
            try:
                state = Running(settings, fakes, key, log_path, worker)
                state.until("the worker's web server", lambda: _ready(state.base))
                yield state
            finally:
                stop_worker(worker)


def _ready(base: str) -> bool:
    async def go() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + "/ready") as answer,
            ):
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    return asyncio.run(go())


def test_signatures_are_checked_and_a_refused_request_writes_nothing(running: Running) -> None:
    form = {"MessageSid": "SM" + "1" * 32, "From": "+13125550399", "Body": "STOP"}
    path = "/webhooks/twilio/sms"
    assert running.twilio(path, form, sign=False)[0] == 403  # missing header
    assert running.twilio(path, form, sign_url="https://evil.example/clarion" + path)[0] == 403
    loopback = f"http://127.0.0.1:{running.settings.web_port}{path}"  # what the worker saw
    assert running.twilio(path, form, sign_url=loopback)[0] == 403
    signed = RequestValidator(TOKEN).compute_signature(PUBLIC + path, form)
    changed = urlencode({**form, "Body": "YES"}).encode()
    headers = {"X-Twilio-Signature": signed, "Content-Type": "application/x-www-form-urlencoded"}
    assert running.post(path, changed, headers)[0] == 403  # changed body
    status_path = "/webhooks/twilio/status?notification_id=ntf-x&customer_id=C-X&channel=sms"
    receipt = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "To": "+13125550399"}
    assert running.twilio(status_path, receipt, sign=False)[0] == 403

    event = {
        "event": "delivered",
        "email": "x@example.com",
        "timestamp": int(time.time()),
        "sg_event_id": "sg-refused-1",
        "notification_id": "ntf-x",
        "customer_id": "C-X",
    }
    assert running.sendgrid([event], age_s=3600)[0] == 403  # stale: a replay
    assert running.sendgrid([event], tamper=True)[0] == 403  # changed body
    missing = running.post("/webhooks/sendgrid/events", json.dumps([event]).encode(), {})
    assert missing[0] == 403
    time.sleep(1.0)
    for name in (topics.SMS_CONVERSATIONS, topics.DELIVERY_RECEIPTS, topics.PREFERENCE_UPDATES):
        assert running.read(name) == [], f"a refused request wrote to {name}"

    # The same requests, signed as the providers sign them, pass and are written.
    status, body = running.twilio(path, {**form, "Body": " help "})
    assert status == 200 and "Bank alerts. Reply STOP to opt out." in body
    assert running.twilio(status_path, receipt)[0] == 204
    status, body = running.sendgrid([event])
    assert status == 200 and json.loads(body)["receipts"] == 1
    assert len(running.read(topics.SMS_CONVERSATIONS)) == 1
    written = [json.loads(v) for v in running.read(topics.DELIVERY_RECEIPTS)]
    assert sorted(r["provider"] for r in written) == ["sendgrid", "twilio"]


def test_stop_yes_and_a_hard_bounce_move_the_cases_on(running: Running) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events: list[tuple[bytes, bytes]] = []
    for n, (cid, (number, email, opens)) in enumerate(PEOPLE.items()):
        profile = {
            "phones": [{"number": number, "type": "mobile", "sms_consent": True}],
            "emails": [{"address": email}],
            "time_zones": ["America/Chicago"],
        }
        for i, (kind, data) in enumerate(
            [("customer.profile.updated", profile), (opens, samples.DATA[opens])]
        ):
            raw = samples.event(kind, data=data, account_id=None if i == 0 else "A-1")
            raw.update(
                event_id=f"in-{n}-{i}",
                customer_id=cid,
                occurred_at=(now - timedelta(seconds=10 - i)).isoformat(),
            )
            events.append((cid.encode(), json.dumps(raw).encode()))
    asyncio.run(produce(running.settings, events))

    twilio, sendgrid = running.fakes.twilio, running.fakes.sendgrid
    running.until("two SMS and one email", lambda: len(twilio.accepted) >= 2 and sendgrid.accepted)
    by_number = {m["To"]: m for m in twilio.accepted if m["kind"] == "SM"}
    assert set(by_number) == {PEOPLE["C-STOP"][0], PEOPLE["C-YES"][0]}
    callback = parse_qs(urlsplit(by_number[PEOPLE["C-STOP"][0]]["StatusCallback"]).query)
    assert callback["customer_id"] == ["C-STOP"] and callback["channel"] == ["sms"]

    # The customers answer.
    assert running.twilio(
        "/webhooks/twilio/sms",
        {"MessageSid": "SM" + "a" * 32, "From": PEOPLE["C-STOP"][0], "Body": "Stop"},
    ) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response />')
    running.twilio(
        "/webhooks/twilio/sms",
        {"MessageSid": "SM" + "b" * 32, "From": PEOPLE["C-YES"][0], "Body": " yes"},
    )
    [mail] = sendgrid.accepted
    bounce = {
        "event": "bounce",
        "type": "bounce",
        "email": PEOPLE["C-BOUNCE"][1],
        "timestamp": int(time.time()),
        "sg_event_id": "sg-bounce-1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
        **mail["custom_args"],
    }
    assert running.sendgrid([bounce])[0] == 200
    assert running.sendgrid([bounce])[0] == 200  # SendGrid retries: dropped as a repeat

    def rows(cid: str) -> list[tuple[str, str, str | None]]:
        return [(d.action, d.reason, d.channel) for d in running.ledger() if d.customer_id == cid]

    def has(cid: str, *row: str | None) -> Any:
        return lambda: row in rows(cid)

    running.until("YES to stop its case", has("C-YES", "stopped", "transaction.confirmed", None))
    running.until("the bounce in the ledger", has("C-BOUNCE", "failed", "hard_bounce", "email"))
    group = running.settings.app_id
    inputs = [running.settings.topic(t) for t in (*topics.INPUTS, topics.DELIVERY_RECEIPTS)]
    asyncio.run(
        topics.wait_until_consumed(running.settings.kafka_bootstrap, group, inputs, timeout=30)
    )

    # An hour later on the event clock: every case's next step falls due.
    later = clock_message(now + timedelta(hours=2))
    ticks = [(None, later, p) for p in range(running.settings.partitions)]
    asyncio.run(_send_ticks(running.settings, ticks))
    running.until("the next SMS step to go by email", has("C-STOP", "sent", "fallback", "email"))
    running.until("the next email step to go by SMS", has("C-BOUNCE", "sent", "fallback", "sms"))

    stop = [d for d in running.ledger() if d.customer_id == "C-STOP" and d.action == "sent"]
    assert [(d.step, d.channel) for d in stop] == [(0, "sms"), (1, "email")]
    assert stop[1].detail == "no mobile number with SMS consent", "the ledger says why"
    yes = rows("C-YES")
    assert not any(channel == "voice" for _, _, channel in yes), "no call after YES"
    bounced = rows("C-BOUNCE")
    assert bounced.count(("failed", "hard_bounce", "email")) == 1, "the repeat was dropped"
    sent = [d for d in running.ledger() if d.customer_id == "C-BOUNCE" and d.action == "sent"]
    assert [(d.step, d.channel) for d in sent] == [(0, "email"), (1, "sms")]
    assert "revoked or" in (sent[1].detail or ""), "the ledger says why"
    number = PEOPLE["C-BOUNCE"][0]
    running.until("the SMS to reach Twilio", lambda: number in {m["To"] for m in twilio.accepted})


async def _send_ticks(settings: Settings, ticks: list[tuple[None, bytes, int]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value, partition in ticks:
            await producer.send_and_wait(
                settings.topic(topics.TIMER_TICKS), value, key=key, partition=partition
            )
    finally:
        await producer.stop()
