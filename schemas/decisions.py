"""The audit ledger's row: one decision, and why (topic `decisions`).

Every message sent, and every message not sent, is one of these; `reason` is a
stable code a compliance officer can filter on, `detail` the words for a person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.notifications import NotificationRequest
from schemas.types import Channel, Identifier

Action = Literal[
    "opened",
    "sent",
    "dispatched",
    "deferred",
    "suppressed",
    "paused",
    "resumed",
    "switched",
    "handoff",
    "stopped",
    "closed",
    "failed",
    "delivered",
    "replied",
    "repaired",
    "consent",
]


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime = Field(description="when the decision took effect")
    customer_id: Identifier
    action: Action
    reason: str = Field(description="stable code, e.g. first_step, contact_window, opt_in_required")
    account_id: Identifier | None = None
    case_id: Identifier | None = None
    escalation: Identifier | None = None
    ladder: Identifier | None = None
    step: int | None = None
    channel: Channel | None = None
    template: Identifier | None = None
    recipient: str | None = None
    notification_id: Identifier | None = None
    until: AwareDatetime | None = Field(default=None, description="for deferred: when it is due")
    cause_event_id: Identifier | None = None
    policy_version: str = Field(
        description="the policy version that chose this: the one a case opened under, for "
        "its steps (a case keeps its ladders until it closes)"
    )
    guards_version: str | None = Field(
        default=None,
        description="the version in force whose guards, categories and calendar held, when "
        "it is not policy_version (a case opened under an earlier version)",
    )
    experiment: str | None = Field(
        default=None, description="the experiment the case's escalation runs (docs/policies.md)"
    )
    arm: str | None = Field(
        default=None, description="the experiment's arm the customer is in; `holdout`: none sent"
    )
    detail: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


def dispatched_decision(request: NotificationRequest, at: datetime, **extra: Any) -> Decision:
    """The ledger row for a notification the channel accepted.

    The engine's `sent` row is the decision to send; this one is the provider's
    acceptance of that message, so an explanation shows both.
    """
    return Decision(
        at=at,
        customer_id=request.customer_id,
        action="dispatched",
        reason="channel_accepted",
        account_id=request.account_id,
        case_id=request.case_id,
        escalation=request.escalation,
        ladder=request.ladder,
        step=request.step,
        channel=request.channel,
        template=request.template,
        recipient=request.recipient,
        notification_id=request.notification_id,
        cause_event_id=request.cause_event_id,
        policy_version=request.policy_version,
        extra=extra,
    )
