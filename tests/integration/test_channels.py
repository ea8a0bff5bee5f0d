"""The real Twilio and SendGrid SDKs against fake providers on loopback.

Each provider answer the dispatcher must tell apart: accepted, each permanent
failure with what it teaches us, 429 with its retry hint, an outage, and an
answer too slow for the client's timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from channels.base import Message
from channels.sendgrid import SendGridConfig, SendGridEmail
from channels.twilio import TwilioConfig, TwilioSms, TwilioVoice
from tests.fakes import FakeSendGrid, FakeTwilio

SID, TOKEN, KEY = "AC" + "1" * 32, "secret-token", "SG.test-key"


def sms(to: str = "+15551230001", nid: str = "ntf-1") -> Message:
    return Message(
        nid, "C-1", "sms", to, "Your payment is late. Reply STOP to opt out.", account_id="A-1"
    )


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(SID, TOKEN) as fake:
        yield fake


@pytest.fixture
async def sendgrid() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid(KEY) as fake:
        yield fake


def twilio_config(fake: FakeTwilio, **overrides: object) -> TwilioConfig:
    values: dict[str, object] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "sms_from": "+15550000000",
        "voice_from": "+15550000001",
        "status_callback_url": "https://hooks.example.com/twilio/status",
        "api_base": fake.url,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return TwilioConfig(**values)  # type: ignore[arg-type]


async def test_sms_accepted_with_callback_carrying_the_message_ids(twilio: FakeTwilio) -> None:
    channel = TwilioSms(twilio_config(twilio))
    try:
        result = await channel.send(sms())
    finally:
        await channel.close()
    assert result.outcome == "accepted"
    assert result.provider_message_id and result.provider_message_id.startswith("SM")
    [sent] = twilio.accepted
    assert sent["To"] == "+15551230001" and sent["From"] == "+15550000000"
    assert sent["Body"].startswith("Your payment is late")
    query = parse_qs(urlsplit(sent["StatusCallback"]).query)
    assert query == {
        "notification_id": ["ntf-1"],
        "customer_id": ["C-1"],
        "channel": ["sms"],
        "account_id": ["A-1"],
    }


async def test_sms_through_a_messaging_service(twilio: FakeTwilio) -> None:
    channel = TwilioSms(twilio_config(twilio, sms_from=None, messaging_service_sid="MG" + "2" * 32))
    try:
        assert (await channel.send(sms())).outcome == "accepted"
    finally:
        await channel.close()
    assert twilio.accepted[0]["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in twilio.accepted[0]


@pytest.mark.parametrize(
    ("to", "code", "reason", "effect"),
    [
        ("+15005550001", "21211", "invalid_number", "unusable"),
        ("+15005550009", "21614", "not_mobile", "unusable"),
        ("+15005550004", "21610", "recipient_opted_out", "opted_out"),
    ],
)
async def test_sms_permanent_failures_say_what_they_teach(
    twilio: FakeTwilio, to: str, code: str, reason: str, effect: str
) -> None:
    channel = TwilioSms(twilio_config(twilio))
    try:
        result = await channel.send(sms(to))
    finally:
        await channel.close()
    assert (result.outcome, result.error_code, result.reason, result.effect) == (
        "permanent",
        code,
        reason,
        effect,
    )
    assert result.detail  # the provider's words, for the ledger


async def test_wrong_credentials_are_a_permanent_configuration_failure(twilio: FakeTwilio) -> None:
    channel = TwilioSms(twilio_config(twilio, auth_token="wrong"))
    try:
        result = await channel.send(sms())
    finally:
        await channel.close()
    assert (result.outcome, result.reason) == ("permanent", "provider_auth")
    assert twilio.accepted == []


async def test_429_is_transient_with_the_retry_after_hint(twilio: FakeTwilio) -> None:
    twilio.behaviour.rate_limit_next, twilio.behaviour.retry_after_s = 1, 7
    channel = TwilioSms(twilio_config(twilio))
    try:
        limited = await channel.send(sms())
        then = await channel.send(sms())
    finally:
        await channel.close()
    assert (limited.outcome, limited.reason, limited.retry_after_s) == (
        "transient",
        "rate_limited",
        7.0,
    )
    assert then.outcome == "accepted"


async def test_outage_and_slow_answers_are_transient(twilio: FakeTwilio) -> None:
    channel = TwilioSms(twilio_config(twilio, timeout_s=0.3))
    try:
        twilio.behaviour.outage_status = 503
        outage = await channel.send(sms())
        twilio.behaviour.outage_status, twilio.behaviour.delay_s = None, 1.0
        slow = await channel.send(sms())
    finally:
        await channel.close()
    assert (outage.outcome, outage.error_code) == ("transient", "503")
    assert (slow.outcome, slow.reason) == ("transient", "transport_error")


async def test_voice_opens_with_silence_and_only_the_voicemail_safe_words(
    twilio: FakeTwilio,
) -> None:
    channel = TwilioVoice(twilio_config(twilio))
    message = Message(
        "ntf-9",
        "C-1",
        "voice",
        "+15551230001",
        "A payment of 120 USD on the account ending 4321 is overdue.",
        voicemail="This is Clarion Bank calling for Ana. Please call us back.",
    )
    try:
        result = await channel.send(message)
        assert result.outcome == "accepted"
        await channel.speak(result.provider_message_id or "", message, "human")
    finally:
        await channel.close()
    call, update = twilio.accepted
    assert call["MachineDetection"] == "DetectMessageEnd" and call["AsyncAmd"] == "true"
    assert "ntf-9" in call["AsyncAmdStatusCallback"] and "ntf-9" in call["StatusCallback"]
    assert "<Pause" in call["Twiml"] and "Please call us back" in call["Twiml"]
    assert "4321" not in call["Twiml"]  # nothing about the account before a person answers
    assert update["sid"] == call["sid"] and "4321" in update["Twiml"]


async def test_email_built_by_the_mail_helper(sendgrid: FakeSendGrid) -> None:
    config = SendGridConfig(
        api_key=KEY,
        from_email="notices@bank.example",
        from_name="Clarion Bank",
        host=sendgrid.url,
        unsubscribe_groups={"collections": 42},
        unsubscribe_mailto="unsubscribe@bank.example",
    )
    channel = SendGridEmail(config)
    message = Message(
        "ntf-2",
        "C-1",
        "email",
        "ana@example.com",
        "Hello Ana,\n\nYour payment is late.",
        subject="Payment reminder",
        category="collections",
        template="payment-missed",
        unsubscribe_url="https://bank.example/p/token",
    )
    try:
        result = await channel.send(message)
    finally:
        await channel.close()
    assert result.outcome == "accepted" and result.provider_message_id == "sg-000000000001"
    [body] = sendgrid.accepted
    assert body["personalizations"][0]["to"] == [{"email": "ana@example.com"}]
    assert body["from"] == {"email": "notices@bank.example", "name": "Clarion Bank"}
    assert body["subject"] == "Payment reminder"
    kinds = {c["type"]: c["value"] for c in body["content"]}
    assert kinds["text/plain"].startswith("Hello Ana")
    assert kinds["text/html"] == "<p>Hello Ana,</p><p>Your payment is late.</p>"
    assert body["custom_args"] == {"notification_id": "ntf-2", "customer_id": "C-1"}
    assert set(body["categories"]) == {"collections", "payment-missed"}
    assert body["asm"] == {"group_id": 42}
    assert body["headers"]["List-Unsubscribe"] == (
        "<https://bank.example/p/token>, <mailto:unsubscribe@bank.example>"
    )
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_email_sends_the_templates_own_html_part(sendgrid: FakeSendGrid) -> None:
    channel = SendGridEmail(
        SendGridConfig(api_key=KEY, from_email="n@b.example", host=sendgrid.url)
    )
    html = "<p>Your payment is <strong>late</strong>.</p>"
    message = Message("ntf-3", "C-1", "email", "ana@example.com", "late", subject="s", html=html)
    try:
        assert (await channel.send(message)).outcome == "accepted"
    finally:
        await channel.close()
    [body] = sendgrid.accepted
    assert {c["type"]: c["value"] for c in body["content"]}["text/html"] == html


@pytest.mark.parametrize(
    ("recipient", "key", "outcome", "reason"),
    [
        ("ana@nowhere", KEY, "permanent", "invalid_address"),
        ("not-an-address", KEY, "permanent", "invalid_address"),
        ("ana@example.com", "SG.wrong", "permanent", "provider_auth"),
    ],
)
async def test_email_permanent_failures(
    sendgrid: FakeSendGrid, recipient: str, key: str, outcome: str, reason: str
) -> None:
    channel = SendGridEmail(
        SendGridConfig(api_key=key, from_email="notices@bank.example", host=sendgrid.url)
    )
    message = Message("ntf-3", "C-1", "email", recipient, "Hello", subject="Hi")
    try:
        result = await channel.send(message)
    finally:
        await channel.close()
    assert (result.outcome, result.reason) == (outcome, reason)


async def test_email_429_outage_and_timeout_are_transient(sendgrid: FakeSendGrid) -> None:
    channel = SendGridEmail(
        SendGridConfig(
            api_key=KEY, from_email="notices@bank.example", host=sendgrid.url, timeout_s=0.3
        )
    )
    message = Message("ntf-4", "C-1", "email", "ana@example.com", "Hello", subject="Hi")
    try:
        sendgrid.behaviour.rate_limit_next, sendgrid.behaviour.retry_after_s = 1, 30
        limited = await channel.send(message)
        sendgrid.behaviour.outage_status = 500
        outage = await channel.send(message)
        sendgrid.behaviour.outage_status, sendgrid.behaviour.delay_s = None, 1.0
        slow = await channel.send(message)
    finally:
        await channel.close()
    assert (limited.outcome, limited.reason) == ("transient", "rate_limited")
    assert limited.retry_after_s is not None and 25 <= limited.retry_after_s <= 31
    assert (outage.outcome, outage.error_code) == ("transient", "500")
    assert (slow.outcome, slow.reason) == ("transient", "transport_error")
