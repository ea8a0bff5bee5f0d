"""Reading what comes back: status callbacks, SendGrid events, links, reply routing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from channels.sendgrid_inbound import read_events, verify
from channels.twilio_inbound import status_receipt
from streams.dispatch.replies import remember, reply_message, resolve
from streams.kafka import topics
from streams.web.links import BadLink, LinkKeys

AT = datetime(2026, 11, 23, 15, tzinfo=UTC)


def test_status_callbacks_become_receipts_classified_by_the_shared_table() -> None:
    def read(channel: str, **form: str) -> tuple[object, ...] | None:
        r = status_receipt(
            form,
            notification_id="ntf-1",
            customer_id="C-1",
            channel=channel,
            at=AT,  # type: ignore[arg-type]
        )
        return None if r is None else (r.status, r.reason, r.effect, r.answered_by)

    assert read("sms", MessageSid="SM1", MessageStatus="delivered") == (
        "delivered",
        None,
        None,
        None,
    )
    assert read("sms", MessageSid="SM1", MessageStatus="sending") is None
    assert read("sms", MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30006") == (
        "undelivered",
        "landline_or_unreachable",
        "unusable",
        None,
    )
    assert read("voice", CallSid="CA1", AnsweredBy="human") == ("answered", None, None, "human")
    assert read("voice", CallSid="CA1", AnsweredBy="machine_end_beep")[3] == "machine"  # type: ignore[index]
    assert read("voice", CallSid="CA1", CallStatus="no-answer")[:2] == (
        "no-answer",
        "twilio_no-answer",
    )  # type: ignore[index]
    assert read("voice", CallSid="CA1", CallStatus="ringing") is None


def _key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


def test_sendgrid_signature_and_age() -> None:
    key, public = _key_pair()
    body, stamp = b'[{"event":"delivered"}]', "1700000000"
    sig = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    assert verify(public, body, sig, stamp, 1700000030, 300) is None
    assert verify(public, body + b" ", sig, stamp, 1700000030, 300) == (
        "signature does not match the body"
    )
    assert "replay" in (verify(public, body, sig, stamp, 1700009999, 300) or "")
    assert verify(public, body, "", stamp, 1700000030, 300) is not None
    assert verify(public, body, "not base64!", stamp, 1700000030, 300) is not None


def test_sendgrid_events_become_receipts_and_preference_changes() -> None:
    ours = {"notification_id": "ntf-1", "customer_id": "C-1", "email": "a@example.com"}
    facts = read_events(
        [
            {**ours, "event": "delivered", "sg_event_id": "e1", "timestamp": 1700000000},
            {**ours, "event": "bounce", "type": "bounce", "sg_event_id": "e2"},
            {**ours, "event": "bounce", "type": "blocked", "sg_event_id": "e3"},
            {**ours, "event": "dropped", "reason": "Bounced Address", "sg_event_id": "e4"},
            {**ours, "event": "unsubscribe", "sg_event_id": "e5"},
            {**ours, "event": "group_unsubscribe", "asm_group_id": 42, "sg_event_id": "e6"},
            {**ours, "event": "group_unsubscribe", "asm_group_id": 99, "sg_event_id": "e7"},
            {**ours, "event": "open", "sg_event_id": "e8"},
            {"event": "delivered", "sg_event_id": "e9", "email": "not-ours@example.com"},
            "garbage",
        ],
        {42: "collections"},
    )
    assert [(r.status, r.reason, r.effect, r.receipt_id) for r in facts.receipts] == [
        ("delivered", None, None, "e1"),
        ("bounced", "hard_bounce", "unusable", "e2"),
        ("bounced", "blocked", None, "e3"),
        ("dropped", "Bounced Address", "unusable", "e4"),
    ]
    assert facts.receipts[0].at == datetime.fromtimestamp(1700000000, UTC)
    consent, group = facts.preferences
    assert consent.type == "consent.changed" and consent.event_id == "sg-e5"
    assert consent.data.model_dump()["status"] == "revoked"
    assert group.data.model_dump()["category_channels"] == {"collections": {"email": False}}
    assert len(facts.skipped) == 4


def test_links_open_until_they_expire_and_survive_a_key_rotation() -> None:
    old = LinkKeys.parse("k1:" + "a" * 32)
    token = old.sign("C-1", AT + timedelta(days=30))
    assert old.read(token, AT) == "C-1"
    rotated = LinkKeys.parse("k2:" + "b" * 32 + ",k1:" + "a" * 32)
    assert rotated.read(token, AT) == "C-1", "an old link works while its key is listed"
    assert rotated.read(rotated.sign("C-1", AT + timedelta(days=1)), AT) == "C-1"
    with pytest.raises(BadLink, match="expired"):
        old.read(token, AT + timedelta(days=31))
    _, mac = token.split(".")
    forged = (
        base64.urlsafe_b64encode(json.dumps({"c": "C-2", "e": 9999999999, "k": "k1"}).encode())
        .decode()
        .rstrip("=")
    )
    with pytest.raises(BadLink, match="unverified"):
        old.read(f"{forged}.{mac}", AT)
    with pytest.raises(BadLink, match="unverified"):
        LinkKeys.parse("k9:" + "c" * 32).read(token, AT)  # a key no longer listed
    with pytest.raises(BadLink, match="malformed"):
        old.read("nonsense", AT)
    with pytest.raises(ValueError):
        LinkKeys.parse("k1:short")


def _mark(cid: str, case: str, at: str, txn: str | None = None) -> dict[str, object]:
    return {
        "kind": "sent",
        "number": "+13125550101",
        "customer_id": cid,
        "account_id": "A-1",
        "case_id": case,
        "transaction_id": txn,
        "at": at,
    }


def test_a_shared_number_is_resolved_by_the_case_that_messaged_it_last() -> None:
    marks: list[dict[str, object]] = []
    marks = remember(marks, _mark("C-1", "large/A-1/e1", "2026-11-23T10:00:00+00:00", "T-1"))
    marks = remember(marks, _mark("C-2", "missed/A-9/e2", "2026-11-23T11:00:00+00:00"))

    def answer(body: str) -> list[tuple[str, str, str]]:
        reply = reply_message("+13125550101", body, "SM1", AT)
        return [(t, e["type"], e["customer_id"]) for t, e in resolve(marks, reply)]

    assert answer("YES") == [(topics.ACCOUNT_EVENTS, "transaction.confirmed", "C-1")]
    assert answer("no") == [(topics.ACCOUNT_EVENTS, "transaction.rejected", "C-1")]
    assert answer("can I pay friday") == [(topics.ACCOUNT_EVENTS, "reply.received", "C-2")]
    assert sorted(answer("STOP")) == [
        (topics.PREFERENCE_UPDATES, "consent.changed", "C-1"),
        (topics.PREFERENCE_UPDATES, "consent.changed", "C-2"),
    ]
    assert answer("HELP") == []
    assert resolve([], reply_message("+1", "YES", "SM2", AT)) == []
    for n in range(20):
        marks = remember(marks, _mark("C-3", f"case-{n}", f"2026-11-23T12:{n:02d}:00+00:00"))
    assert len(marks) == 8


def test_yes_after_stop_opts_back_in_as_at_twilio() -> None:
    marks = remember([], _mark("C-1", "large/A-1/e1", "2026-11-23T10:00:00+00:00", "T-1"))
    reply = reply_message("+13125550101", "yes", "SM9", AT)
    [(topic, event)] = resolve(marks, reply, stopped=True)
    assert (topic, event["type"], event["data"]["status"]) == (
        topics.PREFERENCE_UPDATES,
        "consent.changed",
        "granted",
    )
