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
from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.intake.timers import clock_message
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from streams.web.links import LinkKeys
from tests import samples
from tests.conftest import POLICIES
from tests.fakes import ProvidersThread
from tests.integration.test_pipeline import produce

pytestmark = pytest.mark.integration

SID, TOKEN, KEY = "AC" + "8" * 32, "inbound-token", "SG.inbound"
API_KEY = "api-key-for-tests-0123456789"
LINK_KEYS = "k2:" + "n" * 32 + ",k1:" + "o" * 32
PUBLIC = "https://hooks.bank.example/clarion"

POLICY = """
version: 1
default_locale: en
revocation_confirmation: opt-out-confirmation
contact_windows:
  default: {start: "08:00", end: "21:00"}
categories:
  service: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
  fraud: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
  notices: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false, required: true}
  marketing: {contact_windows: ignore, frequency_caps: exempt, consent: opt_in}
escalations:
  due-soon:
    trigger: payment.due_soon
    category: service
    ladders:
      - name: twice
        steps:
          - after: 0m
            send: {channel: preferred, template: payment-due-soon, fallback: [sms, email]}
          - after: 1h
            send: {channel: preferred, template: payment-due-soon, fallback: [sms, email]}
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

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method, self.base + path, data=body, headers=headers or {}
                ) as answer,
            ):
                text = await answer.text()
                try:
                    return answer.status, json.loads(text)
                except ValueError:
                    return answer.status, text

        return asyncio.run(go())

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
            **fakes.channel_settings(),
            sendgrid_unsubscribe_groups="service=4242",
            public_url=PUBLIC,
            sendgrid_webhook_public_key=base64.b64encode(public_der).decode(),
            sendgrid_webhook_tolerance_s=300,
            sms_help_text="Bank alerts. Reply STOP to opt out.",
            api_keys="old-key-still-valid-000," + API_KEY,
            link_keys=LINK_KEYS,
        )
        asyncio.run(topics.ensure_topics(settings))
        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            worker = start_worker(settings, log)
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
    # Signed, but not one of ours: no ids in the callback URL, no sender on a reply.
    status, answer = running.twilio("/webhooks/twilio/status", receipt)
    assert (status, answer) == (403, '{"error":"not a Clarion status callback"}')
    status, answer = running.twilio(path, {"MessageSid": "SM" + "3" * 32, "Body": "hi"})
    assert (status, answer) == (400, '{"error":"no From or MessageSid"}')

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
        {"MessageSid": "SM" + "a" * 32, "From": PEOPLE["C-STOP"][0], "Body": "Please STOP!"},
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
    confirmed = [d for d in stop if d.reason == "revocation_confirmation"]
    stop = [d for d in stop if d not in confirmed]
    assert [(d.step, d.channel) for d in stop] == [(0, "sms"), (1, "email")]
    # The revocation with its words on the ledger, and the one confirmation the FCC allows.
    assert ("consent", "revoked", "sms") in rows("C-STOP")
    assert [d.recipient for d in confirmed] == [PEOPLE["C-STOP"][0]]
    running.until(
        "the confirmation to reach Twilio",
        lambda: any(
            m["To"] == PEOPLE["C-STOP"][0] and "no longer get text messages" in m["Body"]
            for m in twilio.accepted
        ),
    )
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

    # The consent the STOP revoked, as the API shows it; YES after a STOP opts back in.
    def sms_consent() -> tuple[str, str] | None:
        path = "/api/v1/customers/C-STOP/preferences"
        status, answer = running.request("GET", path, headers={"X-Api-Key": API_KEY})
        assert status == 200, answer
        found = [c for c in answer["consents"] if c["channel"] == "sms"]
        return (found[0]["status"], found[0]["source"]) if found else None

    assert sms_consent() == ("revoked", "sms_keyword")
    back = {"MessageSid": "SM" + "c" * 32, "From": PEOPLE["C-STOP"][0], "Body": "YES"}
    assert running.twilio("/webhooks/twilio/sms", back)[0] == 200
    running.until("YES to restore SMS", lambda: sms_consent() == ("granted", "sms_keyword"))


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


def _profile(cid: str, number: str, email: str) -> tuple[bytes, bytes]:
    raw = samples.event(
        "customer.profile.updated",
        data={
            "phones": [{"number": number, "type": "mobile", "sms_consent": True}],
            "emails": [{"address": email}],
            "time_zones": ["America/Chicago"],
        },
        account_id=None,
    )
    raw.update(
        event_id=f"profile-{cid}", customer_id=cid, occurred_at=datetime.now(UTC).isoformat()
    )
    return cid.encode(), json.dumps(raw).encode()


def test_the_preferences_api_checks_every_request_and_writes_events(running: Running) -> None:
    asyncio.run(produce(running.settings, [_profile("C-API", "+13125550311", "api@example.com")]))
    path = "/api/v1/customers/C-API/preferences"
    good = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    body = json.dumps({"preferred_channel": "email", "channels": {"sms": False}})

    assert running.request("GET", path)[0] == 401
    assert running.request("GET", path, headers={"X-Api-Key": "wrong"})[0] == 401
    status, answer = running.request(
        "GET", "/api/v1/customers/C%20API%3B/preferences", headers=good
    )
    assert status == 400 and "not a customer id" in answer["error"]
    status, answer = running.request("PUT", path, '{"channels": {"fax": true}}', good)
    assert status == 422 and answer["details"][0]["field"].startswith("channels.fax")
    status, answer = running.request("PUT", path, '{"preferred_chanel": "sms"}', good)
    assert status == 422 and answer["details"][0]["field"] == "preferred_chanel"
    assert running.request("PUT", path, "{not json", good)[0] == 400
    assert running.request("PUT", path, "[1, 2]", good)[0] == 400
    assert running.request("GET", "/api/v1/customers/C-NOBODY/preferences", headers=good)[0] == 404

    by_old_key = {"Content-Type": "application/json", "X-Api-Key": "old-key-still-valid-000"}
    status, answer = running.request("PUT", path, body, by_old_key)
    assert status == 202 and answer["status"] == "accepted"
    written = [json.loads(v) for v in running.read(topics.PREFERENCE_UPDATES)]
    [event] = [e for e in written if e["event_id"] == answer["event_id"]]
    assert (event["type"], event["customer_id"], event["source"]) == (
        "customer.preferences.updated",
        "C-API",
        "clarion.api",
    )

    def stored() -> Any:
        status, answer = running.request("GET", path, headers=good)
        return status == 200 and answer["preferences"].get("preferred_channel") == "email"

    running.until("the change to reach the state", stored)
    answer = running.request("GET", path, headers=good)[1]
    assert answer["preferences"]["channels"] == {"sms": False}
    assert answer["required_categories"] == ["notices"]

    status, doc = running.request("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    operations = doc["paths"]["/api/v1/customers/{customer_id}/preferences"]
    assert set(operations) >= {"get", "put"}
    assert "PreferencesUpdate" in doc["components"]["schemas"]


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


def test_the_preference_page_in_a_real_browser(running: Running) -> None:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    def heading(text: str) -> None:
        """Wait for the page whose title is `text` (a submit loads the next page on its own)."""
        # An element of the page being replaced goes stale under us: look again. Chrome
        # says so as a stale reference, or as "Node with given id does not belong to
        # the document" (a plain WebDriverException; it failed a fresh clone's run).
        WebDriverWait(browser, 15, ignored_exceptions=[WebDriverException]).until(
            lambda b: any(h.text == text for h in b.find_elements(By.TAG_NAME, "h1"))
        )

    from streams.web.links import LinkKeys

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run `make test`: it installs chromium"
    number = "+13125550321"
    asyncio.run(produce(running.settings, [_profile("C-PAGE", number, "page@example.com")]))
    token = LinkKeys.parse(LINK_KEYS).sign("C-PAGE", datetime.now(UTC) + timedelta(days=1))

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=412,915")  # a phone
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(f"{running.base}/p/{token[:-3]}xyz")  # tampered
        heading("This link is not valid")
        assert "page@example.com" not in browser.page_source and "C-PAGE" not in browser.page_source

        browser.get(f"{running.base}/p/{token}")
        heading("How we contact you")
        sms = browser.find_element(By.CSS_SELECTOR, "input[name=channel][value=sms]")
        assert sms.is_selected(), "the current choices are shown"
        locked = browser.find_element(By.CSS_SELECTOR, "input[aria-describedby=why-notices]")
        assert locked.is_selected() and not locked.is_enabled()
        assert "Required by law" in browser.find_element(By.ID, "why-notices").text
        browser.find_element(By.XPATH, "//label[contains(., 'Email')]/input[@type='radio']").click()
        sms.send_keys(Keys.SPACE)  # the keyboard works as well as the mouse
        assert not sms.is_selected()
        browser.save_screenshot(str(ARTIFACTS / "preference-page.png"))
        browser.find_element(By.TAG_NAME, "button").click()
        heading("Your choices are saved")
        summary = browser.find_element(By.TAG_NAME, "ul").text
        assert "Preferred: Email" in summary and "Switched off: Text message (SMS)" in summary
        browser.save_screenshot(str(ARTIFACTS / "preference-page-saved.png"))
    finally:
        browser.quit()

    # The next notification for this customer goes by email.
    group = running.settings.app_id
    inputs = [running.settings.topic(t) for t in topics.INPUTS]
    asyncio.run(
        topics.wait_until_consumed(running.settings.kafka_bootstrap, group, inputs, timeout=30)
    )
    due = samples.event("payment.due_soon", account_id="A-7")
    due.update(event_id="page-due", customer_id="C-PAGE", occurred_at=datetime.now(UTC).isoformat())
    asyncio.run(produce(running.settings, [(b"C-PAGE", json.dumps(due).encode())]))
    sendgrid = running.fakes.sendgrid
    running.until(
        "the email",
        lambda: any(m["custom_args"]["customer_id"] == "C-PAGE" for m in sendgrid.accepted),
    )
    [sent] = [d for d in running.ledger() if d.customer_id == "C-PAGE" and d.action == "sent"]
    assert (sent.channel, sent.reason) == ("email", "step_due")
    assert number not in {m["To"] for m in running.fakes.twilio.accepted}
    [mail] = [m for m in sendgrid.accepted if m["custom_args"]["customer_id"] == "C-PAGE"]
    headers = mail["headers"]
    assert headers["List-Unsubscribe"].startswith(f"<{PUBLIC}/p/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail["content"][0]["value"]
    assert f"{PUBLIC}/p/" in text, "the message carries the customer's link"


def test_the_preference_page_speaks_the_customers_language(running: Running) -> None:
    from streams.web.links import LinkKeys

    key, value = _profile("C-ES", "+13125550341", "es@example.com")
    profile = json.loads(value)
    profile["data"]["locale"] = "es-US"
    asyncio.run(produce(running.settings, [(key, json.dumps(profile).encode())]))
    token = LinkKeys.parse(LINK_KEYS).sign("C-ES", datetime.now(UTC) + timedelta(days=1))

    def shown() -> bool:
        page = running.request("GET", f"/p/{token}")[1]
        return "Cómo nos comunicamos con usted" in page

    running.until("the Spanish profile to reach the state", shown)
    status, page = running.request("GET", f"/p/{token}")
    assert status == 200 and '<html lang="es">' in page
    assert "Mensaje de texto (SMS)" in page and "Exigido por ley" in page
    assert '<input type="hidden" name="lang" value="es">' in page

    form = {"lang": "es", "preferred_channel": "email", "channel": "email"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, saved = running.post(f"/p/{token}", urlencode(form).encode(), headers)
    assert status == 200 and "Guardamos sus preferencias" in saved
    assert "Preferido: Correo electrónico" in saved
    assert "Desactivado: Mensaje de texto (SMS), Llamada telefónica" in saved

    # A link that names nobody: the browser's language is all there is to go by.
    spanish = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
    status, refused = running.request("GET", f"/p/{token[:-3]}xyz", headers=spanish)
    assert status == 403 and "Este enlace no es válido" in refused
    status, refused = running.request("GET", f"/p/{token[:-3]}xyz")
    assert status == 403 and "This link is not valid" in refused


def test_detection_decides_what_a_call_says(running: Running) -> None:
    """A person hears the whole message; an answering machine only the voicemail-safe words."""
    now = datetime.now(UTC).replace(microsecond=0)
    people = {"C-HUMAN": "+13125550331", "C-MACHINE": "+13125550332"}
    events = []
    for cid, number in people.items():
        events.append(_profile(cid, number, f"{cid.lower()}@example.com"))
        large = samples.event("transaction.large", account_id="A-1")
        large.update(event_id=f"large-{cid}", customer_id=cid, occurred_at=now.isoformat())
        events.append((cid.encode(), json.dumps(large).encode()))
    asyncio.run(produce(running.settings, events))
    twilio = running.fakes.twilio
    running.until("the SMS", lambda: set(people.values()) <= {m["To"] for m in twilio.accepted})
    group = running.settings.app_id
    inputs = [running.settings.topic(t) for t in topics.INPUTS]
    asyncio.run(
        topics.wait_until_consumed(running.settings.kafka_bootstrap, group, inputs, timeout=30)
    )
    later = clock_message(now + timedelta(minutes=20))
    asyncio.run(_send_ticks(running.settings, [(None, later, p) for p in range(2)]))

    def calls() -> dict[str, dict[str, str]]:
        return {m["To"]: m for m in twilio.accepted if m["kind"] == "CA"}

    running.until("both calls", lambda: set(people.values()) <= set(calls()))
    for cid, verdict in (("C-HUMAN", "human"), ("C-MACHINE", "machine_end_beep")):
        call = calls()[people[cid]]
        assert "card security" not in call["Twiml"], "the opening says nothing about the account"
        assert call["MachineDetection"] == "DetectMessageEnd" and call["AsyncAmd"] == "true"
        hook = call["AsyncAmdStatusCallback"].removeprefix(PUBLIC)
        form = {"CallSid": call["sid"], "AccountSid": SID, "AnsweredBy": verdict}
        assert running.twilio(hook, form)[0] == 204

    def updates() -> dict[str, str]:
        return {m["sid"]: m["Twiml"] for m in twilio.accepted if m["kind"] == "update"}

    running.until("both calls updated", lambda: len(updates()) >= 2)
    human, machine = (updates()[calls()[people[c]]["sid"]] for c in ("C-HUMAN", "C-MACHINE"))
    assert "card security team" in human and "Electronics" in human
    assert "call me back" in machine and "card security" not in machine

    def answered() -> list[tuple[str, str]]:
        return [
            (d.customer_id, d.reason)
            for d in running.ledger()
            if d.action == "delivered" and d.channel == "voice"
        ]

    running.until("the answers in the ledger", lambda: len(answered()) == 2)
    assert sorted(answered()) == [("C-HUMAN", "answered"), ("C-MACHINE", "answered")]


def test_no_malformed_request_gets_a_5xx(running: Running) -> None:
    """Issue 26's hostile requests: each is answered 4xx, before or after authentication,
    and the worker lives on."""
    api = "/api/v1/customers/C-API/preferences"
    good = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    # Unauthenticated, and each a 500 before: a non-ASCII key, a token holding 1e999,
    # a form that is not UTF-8.
    assert running.request("GET", api, headers={"X-Api-Key": "clé-ünicode"})[0] == 401
    assert running.request("GET", api, headers={"Authorization": "Bearer ключ"})[0] == 401
    payload = base64.urlsafe_b64encode(b'{"c": "C-1", "e": 1e999, "k": "k1"}').decode()
    assert running.request("GET", f"/p/{payload.rstrip('=')}.AAAA")[0] == 403
    assert running.request("GET", "/p/caf\u00e9.\u00e9t\u00e9")[0] in (400, 403)
    latin1 = b"From=%2B13125550399&Body=caf\xe9&MessageSid=SM1"
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
    for hook in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
        assert running.post(hook, latin1, form)[0] == 400
        assert running.post(hook, b"Body=%FF%FE", form)[0] == 400
    # Authenticated: JSON nested 10,000 deep, numbers out of range.
    deep = b"[" * 10_000 + b"]" * 10_000
    assert running.request("PUT", api, deep, good)[0] == 400
    assert running.request("PUT", api, b'{"locale": 1e999}', good)[0] == 400
    assert running.request("PUT", api, b'{"n": ' + b"9" * 5000 + b"}", good)[0] == 400
    assert running.sendgrid([{"event": "delivered", "n": 10**30}])[0] == 400
    nested: Any = []
    for _ in range(50):
        nested = [nested]
    assert running.sendgrid([{"event": "delivered", "deep": nested}])[0] == 400
    # A signed Twilio callback with a customer id no producer could have sent.
    status_form = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered"}
    query = "?notification_id=ntf-1&channel=sms&customer_id=" + "C" * 5000
    assert running.twilio("/webhooks/twilio/status" + query, status_form)[0] in (400, 403)
    # The page: a multipart or non-UTF-8 body behind a valid link.
    token = LinkKeys.parse(LINK_KEYS).sign("C-API", datetime.now(UTC) + timedelta(days=1))
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    assert running.post(f"/p/{token}", b"--x--\r\n", multipart)[0] == 415
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    assert running.post(f"/p/{token}", b"lang=\xff\xfe", urlencoded)[0] == 400
    assert running.request("GET", "/live")[0] == 200
