"""What SendGrid's Event Webhook tells us, as receipts and preference changes.

A POST carries a JSON array of events, signed with ECDSA over the timestamp
and the raw body (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features).
`verify` checks both the signature and the timestamp's age, so a captured
request cannot be replayed later; `read_events` turns each event Clarion sent
into one fact. Every fact carries SendGrid's `sg_event_id`, by which the worker
drops a repeat (SendGrid retries a webhook that did not answer 2xx).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError
from sendgrid.helpers.eventwebhook import EventWebhook

from schemas.events import Event, event_from_dict
from schemas.notifications import DeliveryReceipt

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SOURCE = "sendgrid.event_webhook"

# `dropped` reasons that say the address itself is the problem
# (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event#dropped).
_DROPPED_EFFECT = {
    "Bounced Address": "unusable",
    "Invalid": "unusable",
    "Unsubscribed Address": "opted_out",
    "Spam Reporting Address": "opted_out",
}


def verify(
    public_key: str, payload: bytes, signature: str, timestamp: str, now: float, tolerance_s: float
) -> str | None:
    """None when SendGrid signed this body recently; otherwise why the request is refused."""
    if not signature or not timestamp:
        return "missing signature or timestamp header"
    try:
        age = now - float(timestamp)
    except ValueError:
        return "timestamp is not a number"
    if abs(age) > tolerance_s:
        return f"timestamp is {age:.0f} s from now (tolerance {tolerance_s:.0f} s): a replay?"
    try:
        good = EventWebhook(public_key).verify_signature(
            payload.decode("utf-8"), signature, timestamp
        )
    except (binascii.Error, ValueError, UnicodeDecodeError, InvalidSignature):
        good = False
    return None if good else "signature does not match the body"


@dataclass
class Facts:
    """What one webhook delivery said, sorted by where it goes."""

    receipts: list[DeliveryReceipt] = field(default_factory=list)
    preferences: list[Event] = field(default_factory=list)
    """`consent.changed` and `customer.preferences.updated` events (topic `preference-updates`)."""
    skipped: list[str] = field(default_factory=list)
    """Why an event was not used: not one of ours, or a kind Clarion does not act on."""


def read_events(events: list[Any], groups: Mapping[int, str]) -> Facts:
    """Each event of a delivery as a fact; `groups` maps unsubscribe group ids to categories."""
    facts = Facts()
    for item in events:
        if not isinstance(item, dict):
            facts.skipped.append("not an object")
            continue
        kind = str(item.get("event", ""))
        nid, cid, eid = (
            item.get("notification_id"),
            item.get("customer_id"),
            item.get("sg_event_id"),
        )
        if not (isinstance(nid, str) and isinstance(cid, str) and isinstance(eid, str)):
            facts.skipped.append(f"{kind}: no notification_id, customer_id or sg_event_id")
            continue
        try:
            _read_one(facts, item, kind, nid, cid, eid, groups)
        except ValidationError as exc:
            facts.skipped.append(f"{kind}: {exc.errors(include_url=False)[0]['msg']}")
    return facts


def _read_one(
    facts: Facts,
    item: Mapping[str, Any],
    kind: str,
    nid: str,
    cid: str,
    eid: str,
    groups: Mapping[int, str],
) -> None:
    at = _time(item.get("timestamp"))
    address = str(item.get("email") or "") or None
    if kind in ("delivered", "bounce", "dropped"):
        facts.receipts.append(_receipt(item, kind, nid, cid, eid, at, address))
    elif kind in ("unsubscribe", "spamreport") and address:
        facts.preferences.append(
            _event(
                eid,
                cid,
                at,
                "consent.changed",
                {
                    "channel": "email",
                    "address": address,
                    "status": "revoked",
                    "source": f"sendgrid_{kind}",
                },
            )
        )
    elif kind in ("group_unsubscribe", "group_resubscribe"):
        category = groups.get(_group(item.get("asm_group_id")) or -1)
        if category is None:
            facts.skipped.append(f"{kind}: unsubscribe group {item.get('asm_group_id')} unknown")
            return
        choice = kind == "group_resubscribe"
        data = {"category_channels": {category: {"email": choice}}}
        facts.preferences.append(_event(eid, cid, at, "customer.preferences.updated", data))
    else:
        facts.skipped.append(f"{kind}: not acted on")


def _receipt(
    item: Mapping[str, Any],
    kind: str,
    nid: str,
    cid: str,
    eid: str,
    at: datetime,
    address: str | None,
) -> DeliveryReceipt:
    status, reason, effect = "delivered", None, None
    if kind == "bounce":
        hard = item.get("type", "bounce") == "bounce"
        status, reason = "bounced", "hard_bounce" if hard else "blocked"
        effect = "unusable" if hard else None
    elif kind == "dropped":
        status, reason = "dropped", str(item.get("reason") or "dropped")
        effect = _DROPPED_EFFECT.get(reason)
    return DeliveryReceipt(
        notification_id=nid,
        customer_id=cid,
        account_id=str(item["account_id"]) if item.get("account_id") else None,
        channel="email",
        provider="sendgrid",
        receipt_id=eid,
        status=status,
        at=at,
        provider_message_id=str(item.get("sg_message_id") or "") or None,
        error_code=str(item["status"]) if item.get("status") else None,
        reason=reason,
        effect=effect,
        recipient=address,
    )


def _event(eid: str, cid: str, at: datetime, type_: str, data: dict[str, Any]) -> Event:
    return event_from_dict(
        {
            "event_id": f"sg-{eid}",
            "type": type_,
            "occurred_at": at.isoformat(),
            "customer_id": cid,
            "source": SOURCE,
            "data": data,
        }
    )


def _time(value: object) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)


def _group(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None
