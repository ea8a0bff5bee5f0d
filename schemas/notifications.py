"""What the engine asks a channel to send, and what comes back from the provider."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.types import Channel, Identifier, Priority


def notification_id(
    customer_id: str, case_id: str, step: int, channel: str, recipient: str, attempt: int = 1
) -> str:
    """Deterministic, so a replayed decision names the same message and is sent once.

    A hash, not the parts themselves: the id travels to providers (Twilio,
    SendGrid custom args) and must not carry a phone number or an address.
    """
    parts = "\x1f".join([customer_id, case_id, str(step), channel, recipient, str(attempt)])
    return "ntf-" + hashlib.sha256(parts.encode()).hexdigest()[:24]


class NotificationRequest(BaseModel):
    """One message on one channel to one recipient (topic `notifications-outbound`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notification_id: Identifier
    customer_id: Identifier
    account_id: Identifier | None = None
    case_id: Identifier
    escalation: Identifier
    ladder: Identifier
    step: int = Field(ge=0)
    attempt: int = Field(default=1, ge=1)
    category: Identifier
    channel: Channel
    recipient: str = Field(min_length=1, description="E.164 number or email address")
    template: Identifier
    locale: str
    requested_at: AwareDatetime
    policy_version: str
    cause_event_id: Identifier | None = None
    priority: Priority = Field(
        default="normal", description="urgent ones go before waiting normal and bulk ones"
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description="what the template may read: event data, account, links"
    )


class DeliveryReceipt(BaseModel):
    """A provider's word on one notification (topic `delivery-receipts`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notification_id: Identifier
    customer_id: Identifier
    channel: Channel
    provider: Identifier
    account_id: Identifier | None = Field(
        default=None, description="the account the message was about (it outlives its case)"
    )
    receipt_id: str | None = Field(
        default=None,
        max_length=200,
        description="the provider's id for this report; a repeat of a seen id is dropped",
    )
    status: Literal[
        "accepted",
        "queued",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "bounced",
        "dropped",
        "completed",
        "busy",
        "no-answer",
        "spamreport",
        "unsubscribe",
        "answered",
    ]
    at: AwareDatetime
    provider_message_id: str | None = None
    error_code: str | None = None
    answered_by: Literal["human", "machine", "unknown"] | None = None
    reason: str | None = Field(
        default=None, description="the classified failure (channels.outcomes), for the ledger"
    )
    effect: Literal["opted_out", "unusable"] | None = Field(
        default=None,
        description="what a permanent failure says of the recipient: opted out, or unusable",
    )
    recipient: str | None = Field(default=None, description="the address or number it went to")
