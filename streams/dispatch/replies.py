"""Who an SMS reply comes from, and what it becomes.

Twilio tells us only the number a reply came from. Every SMS the dispatcher
hands to Twilio leaves a mark on `sms-conversations`, keyed by the number, and
the webhook puts each reply on the same topic. So one agent, owning that
number's partition, sees both: it keeps the last few marks per number (table
`sms-numbers`) and resolves each reply against them:

- A revocation, in whatever words (channels/reply_words.py), revokes SMS consent
  for that number, for every customer we messaged there, with the words on the
  ledger; one that may be a revocation revokes it too, and an agent reads it.
  The customer messaged last gets the one-time confirmation, if the policy has
  one. START, UNSTOP, and YES after a STOP restore consent. (HELP was answered
  by the webhook.)
- YES / NO answer the verification case that messaged the number last
  (`transaction.confirmed` / `transaction.rejected`).
- Anything else is recorded on the case that messaged the number last
  (`reply.received`); the policy's `on_reply` says whether an agent gets it.

The resolved facts go to the customer's topics (`preference-updates`,
`account-events`), so they reach the engine like any other event. A reply from
a number no customer was messaged at goes to `dead-letters`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from channels.reply_words import read_reply
from schemas.notifications import NotificationRequest
from streams.kafka import topics, transport
from streams.kafka.outlets import Outlets, describe, enter
from streams.runtime.settings import Settings

log = structlog.get_logger(__name__)

MAX_PER_NUMBER = 8
"""Marks kept per number: several customers may share one (a family, a business line)."""

SOURCE = "clarion.sms"


def sent_mark(request: NotificationRequest, at: datetime) -> dict[str, Any]:
    data = request.context.get("data") or {}
    return {
        "kind": "sent",
        "number": request.recipient,
        "customer_id": request.customer_id,
        "account_id": request.account_id,
        "case_id": request.case_id,
        "transaction_id": data.get("transaction_id") if isinstance(data, dict) else None,
        "at": at.isoformat(),
    }


def reply_message(number: str, body: str, message_sid: str, at: datetime) -> dict[str, Any]:
    return {
        "kind": "reply",
        "number": number,
        "body": body,
        "sid": message_sid,
        "at": at.isoformat(),
    }


def remember(entries: list[dict[str, Any]], mark: dict[str, Any]) -> list[dict[str, Any]]:
    """The marks for a number after one more: one per case, newest last, at most a few."""
    kept = [
        e
        for e in entries
        if (e["customer_id"], e["case_id"]) != (mark["customer_id"], mark["case_id"])
    ]
    kept.append({k: v for k, v in mark.items() if k not in ("kind", "number")})
    kept.sort(key=lambda e: str(e["at"]))
    return kept[-MAX_PER_NUMBER:]


def resolve(
    entries: list[dict[str, Any]], reply: dict[str, Any], stopped: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The events a reply becomes, each with the topic it goes to; empty when nobody matches.

    `stopped`: the number's last keyword was STOP. Then YES opts back in, as it
    does at Twilio (its opt-in keywords are START, UNSTOP and YES), rather than
    answering a verification question the number can no longer have received.
    """
    if not entries:
        return []
    number, body, at = reply["number"], reply["body"], reply["at"]
    said = read_reply(body)
    if said == "yes" and stopped:
        said = "start"
    event_id = f"sms-{reply['sid']}"

    def event(type_: str, entry: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "type": type_,
            "occurred_at": at,
            "customer_id": entry["customer_id"],
            "account_id": entry.get("account_id"),
            "source": SOURCE,
            "data": data,
        }

    if said in ("stop", "maybe_stop", "start"):
        customers = {e["customer_id"]: e for e in entries}
        answered = entries[-1]["customer_id"]
        return [
            (
                topics.PREFERENCE_UPDATES,
                event(
                    "consent.changed", e, _consent(said, number, e, body, e is customers[answered])
                ),
            )
            for e in customers.values()
        ]
    if said == "help":
        return []
    last = entries[-1]
    if said in ("yes", "no"):
        asking = [e for e in entries if e.get("transaction_id")]
        if asking:
            entry = asking[-1]
            type_ = "transaction.confirmed" if said == "yes" else "transaction.rejected"
            answer = {"transaction_id": entry["transaction_id"], "via": "sms"}
            return [(topics.ACCOUNT_EVENTS, event(type_, entry, answer))]
    reply_data = {"channel": "sms", "text": body[:1600], "case_id": last["case_id"]}
    return [(topics.ACCOUNT_EVENTS, event("reply.received", last, reply_data))]


def _consent(
    said: str, number: str, entry: dict[str, Any], body: str, answered: bool
) -> dict[str, Any]:
    """`consent.changed` data for one customer at the number: the words go with a revocation."""
    consent = {"channel": "sms", "address": number, "status": "granted", "source": "sms_keyword"}
    if said == "start":
        return consent
    return {
        **consent,
        "status": "revoked",
        "source": "sms_keyword" if said == "stop" else "sms_reply",
        "reply": body[:1600],
        "certain": said == "stop",
        "case_id": entry.get("case_id"),
        "confirm": answered and said == "stop",
    }


def install(
    app: faust.App, settings: Settings, out: Outlets
) -> Callable[[NotificationRequest], Awaitable[None]]:
    """The `sms-replies` agent; returns what the dispatcher calls for each SMS Twilio took."""
    produce, dead_letter = out.produce, out.dead_letter
    conversations = app.topic(
        settings.topic(topics.SMS_CONVERSATIONS),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    numbers = transport.table(app, "sms-numbers", partitions=settings.partitions, default=None)
    conversations_name = settings.topic(topics.SMS_CONVERSATIONS)

    @app.agent(conversations, name="sms-replies", concurrency=1)
    async def sms_replies(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("sms-replies", resolve_replies(stream))

    async def resolve_replies(stream: faust.StreamT[bytes]) -> None:
        """Batches: each number's entry is read and written once per batch, not per message."""
        async for events in stream.take_events(500, within=0.01):  # type: ignore[attr-defined]  # faust's StreamT omits it
            changed: dict[str, tuple[dict[str, Any], faust.EventT[bytes]]] = {}
            for event in events:
                enter(event)
                try:
                    await handle(event, changed)
                except Exception as exc:  # never let Faust ack what we did not handle
                    missing = f" (no {exc})" if isinstance(exc, KeyError) else ""
                    reason = f"not an SMS mark or reply{missing}"
                    await dead_letter(event, "invalid_reply", reason)
            for number, (value, event) in changed.items():
                enter(event)
                try:
                    await numbers.write(number, value)
                except Exception as exc:
                    reason = describe(exc, "saving the number's conversation")
                    await dead_letter(event, "internal_error", reason)

    async def handle(
        event: faust.EventT[bytes], changed: dict[str, tuple[dict[str, Any], faust.EventT[bytes]]]
    ) -> None:
        message = json.loads(event.message.value or b"")
        number = message["number"]
        if number in changed:
            known = changed[number][0]
        else:
            known = numbers.get(number) or {"marks": [], "stopped": False}
        if message["kind"] == "sent":
            changed[number] = ({**known, "marks": remember(known["marks"], message)}, event)
            return
        found = resolve(known["marks"], message, known["stopped"])
        said = read_reply(message["body"])
        if said in ("stop", "maybe_stop", "start") or (said == "yes" and known["stopped"]):
            changed[number] = ({**known, "stopped": said in ("stop", "maybe_stop")}, event)
        if not found and said != "help":
            await dead_letter(
                event, "unknown_sender", "an SMS reply from a number we never messaged"
            )
        for topic, value in found:
            await produce(
                settings.topic(topic), value["customer_id"].encode(), json.dumps(value).encode()
            )
            log.info(
                "sms.reply_resolved",
                type=value["type"],
                customer_id=value["customer_id"],
                event_id=value["event_id"],
            )

    async def mark_sent(request: NotificationRequest) -> None:
        if request.channel != "sms":
            return
        mark = sent_mark(request, datetime.now(UTC))
        await produce(conversations_name, request.recipient.encode(), json.dumps(mark).encode())

    return mark_sent
