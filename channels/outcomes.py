"""How a provider's answer is classified: accepted, transient or permanent, and what follows.

One table per provider, shared by the two paths a failure arrives by: the
answer to the send itself (Twilio 2xxxx codes, SendGrid HTTP statuses) and,
later, the status callbacks (Twilio 30xxx delivery codes). Every row cites the
provider's documentation, so a compliance officer can read why we retried a
message or gave up on an address.

An `effect` is what a permanent failure teaches us about the recipient:
`opted_out` (they replied STOP: no SMS until START), `unusable` (the address or
number cannot receive this channel: never try it again). The engine applies
it and moves the step to its fallback channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["accepted", "transient", "permanent"]
Effect = Literal["opted_out", "unusable"]


@dataclass(frozen=True, slots=True)
class Classified:
    outcome: Outcome
    reason: str
    """A stable code for the ledger (`failed` rows carry it)."""
    effect: Effect | None = None
    source: str = ""
    """Where the provider documents it."""


def _twilio(code: int) -> str:
    return f"https://www.twilio.com/docs/api/errors/{code}"


TWILIO_CODES: dict[int, Classified] = {
    # Answers to messages.create / calls.create.
    20003: Classified("permanent", "provider_auth", source=_twilio(20003)),
    20429: Classified("transient", "rate_limited", source=_twilio(20429)),
    21211: Classified("permanent", "invalid_number", "unusable", _twilio(21211)),
    21408: Classified("permanent", "region_not_enabled", source=_twilio(21408)),
    21606: Classified("permanent", "invalid_sender", source=_twilio(21606)),
    21610: Classified("permanent", "recipient_opted_out", "opted_out", _twilio(21610)),
    21612: Classified("permanent", "unroutable", source=_twilio(21612)),
    21614: Classified("permanent", "not_mobile", "unusable", _twilio(21614)),
    21635: Classified("permanent", "not_mobile", "unusable", _twilio(21635)),
    # Delivery codes: they arrive later, in status callbacks.
    30003: Classified("transient", "unreachable_handset", source=_twilio(30003)),
    30004: Classified("permanent", "message_blocked", source=_twilio(30004)),
    30005: Classified("permanent", "unknown_number", "unusable", _twilio(30005)),
    30006: Classified("permanent", "landline_or_unreachable", "unusable", _twilio(30006)),
    30007: Classified("permanent", "filtered_as_spam", source=_twilio(30007)),
    30008: Classified("transient", "unknown_delivery_error", source=_twilio(30008)),
    30500: Classified("transient", "carrier_error", source=_twilio(30500)),
}

_SENDGRID_DOC = (
    "https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses"
)

SENDGRID_STATUSES: dict[int, Classified] = {
    400: Classified("permanent", "invalid_request", source=_SENDGRID_DOC),
    401: Classified("permanent", "provider_auth", source=_SENDGRID_DOC),
    403: Classified("permanent", "provider_auth", source=_SENDGRID_DOC),
    413: Classified("permanent", "payload_too_large", source=_SENDGRID_DOC),
    429: Classified("transient", "rate_limited", source=_SENDGRID_DOC),
}


def twilio_error(status: int, code: int | None) -> Classified:
    """A Twilio REST error (HTTP status and Twilio code) or a callback's ErrorCode."""
    if code is not None and code in TWILIO_CODES:
        return TWILIO_CODES[code]
    return _by_status(status, f"twilio_{code or status}")


INVALID_ADDRESS = Classified("permanent", "invalid_address", "unusable", _SENDGRID_DOC)
"""A 400 whose error names the recipient's address: that address will never work."""


def sendgrid_error(status: int, body: str = "") -> Classified:
    """A SendGrid v3 API answer that is not 2xx (its JSON `errors` say which field)."""
    if status == 400 and _names_recipient(body):
        return INVALID_ADDRESS
    return SENDGRID_STATUSES.get(status) or _by_status(status, f"sendgrid_{status}")


def _names_recipient(body: str) -> bool:
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(
        str(e.get("field") or "").startswith("personalizations") and "email" in str(e.get("field"))
        for e in errors
        if isinstance(e, dict)
    )


def _by_status(status: int, reason: str) -> Classified:
    """Codes nobody listed: 429 and 5xx are worth another try; other 4xx are not."""
    if status == 429 or status >= 500 or status == 0:
        return Classified("transient", reason)
    return Classified("permanent", reason)


TRANSPORT = Classified("transient", "transport_error")
"""No answer at all: a timeout, a refused or reset connection."""
