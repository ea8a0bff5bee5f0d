"""What Twilio sends back: status callbacks, the detection verdict, and customers' replies.

Everything here is a pure reading of a request Twilio signed (what a reply's
words mean is channels/reply_words.py); the worker's web
views (streams/web/) check the signature with `signature_ok`, then turn what
these functions return into events. The delivery codes (30xxx) are classified
by the same table as the answers to the send itself (channels/outcomes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from channels.outcomes import twilio_error
from schemas.notifications import DeliveryReceipt
from schemas.types import Channel

# Message statuses (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values)
# and call statuses (https://www.twilio.com/docs/voice/api/call-resource#call-status-values)
# that say something the engine acts on; the in-between ones (sending, ringing, ...) only log.
_SMS_STATUSES = {"queued", "sent", "delivered", "undelivered", "failed"}
_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}


def signature_ok(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """Twilio's HMAC over the public URL and the form fields (`X-Twilio-Signature`).

    `url` must be the URL Twilio called, as configured, never rebuilt from the
    Host header: a proxy in between rewrites the host and the check would fail,
    or worse, pass for a URL an attacker chose.
    """
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def status_receipt(
    params: Mapping[str, str],
    *,
    notification_id: str,
    customer_id: str,
    channel: Channel,
    at: datetime,
    account_id: str | None = None,
) -> DeliveryReceipt | None:
    """A status callback (or the asynchronous detection verdict) as a delivery receipt.

    None for statuses that only say the message is on its way.
    """
    sid = params.get("MessageSid") or params.get("CallSid") or ""
    answered = _answered_by(params.get("AnsweredBy"))
    if channel == "voice" and "CallStatus" not in params and answered is not None:
        status = "answered"  # the asynchronous detection verdict: the call is still going on
    elif channel == "voice":
        status = params.get("CallStatus", "")
        if status not in _CALL_STATUSES:
            return None
        status = "failed" if status == "canceled" else status
    else:
        status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        if status not in _SMS_STATUSES:
            return None
    code = params.get("ErrorCode") or None
    reason, effect = None, None
    if code is not None:
        classified = twilio_error(0, _int(code))
        reason, effect = classified.reason, classified.effect
    elif status in ("failed", "undelivered", "busy", "no-answer"):
        reason = f"twilio_{status}"
    return DeliveryReceipt(
        notification_id=notification_id,
        customer_id=customer_id,
        account_id=account_id,
        channel=channel,
        provider="twilio",
        receipt_id=f"{sid}:{status}:{answered or ''}",
        status=status,
        at=at,
        provider_message_id=sid or None,
        error_code=code,
        answered_by=answered,
        reason=reason,
        effect=effect,
        recipient=params.get("To") or params.get("Called") or None,
    )


def reply_twiml(text: str | None) -> str:
    """The answer to an inbound message: a reply to send back, or nothing."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def _answered_by(value: str | None) -> Literal["human", "machine", "unknown"] | None:
    """Twilio's detection verdicts (human, machine_start, machine_end_beep, fax, unknown)."""
    if not value:
        return None
    if value == "human":
        return "human"
    if value.startswith("machine") or value == "fax":
        return "machine"
    return "unknown"


def _int(code: str | None) -> int | None:
    try:
        return int(code) if code is not None else None
    except ValueError:
        return None
