"""The channel interface every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from channels.outcomes import Classified, Effect
from schemas.types import Channel as ChannelName


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notification, ready for a provider."""

    notification_id: str
    customer_id: str
    channel: ChannelName
    recipient: str
    body: str
    subject: str | None = None
    locale: str = "en"
    category: str = ""
    template: str = ""
    voicemail: str | None = None
    """Voice only: the limited-content words an answering machine may hear."""
    unsubscribe_url: str | None = None
    """The customer's preference page, when the message carries one."""
    account_id: str | None = None
    """Travels with the message, so a receipt after the case closed still names the account."""
    html: str | None = None
    """Email only: the HTML part, when the template has one (else it is made from `body`)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one attempt ended: the dispatcher decides what comes next from `outcome`."""

    outcome: Literal["accepted", "transient", "permanent"]
    provider: str
    provider_message_id: str | None = None
    error_code: str | None = None
    detail: str = ""
    reason: str = ""
    """A stable code from `channels.outcomes` (empty when accepted)."""
    effect: Effect | None = None
    """What a permanent failure says about the recipient: opted out, or unusable."""
    retry_after_s: float | None = None
    """The provider's own word on when to try again (429 `Retry-After`)."""

    @classmethod
    def failed(
        cls,
        classified: Classified,
        provider: str,
        detail: str,
        error_code: str | None = None,
        retry_after_s: float | None = None,
    ) -> SendResult:
        return cls(
            classified.outcome,
            provider,
            error_code=error_code,
            detail=detail,
            reason=classified.reason,
            effect=classified.effect,
            retry_after_s=retry_after_s,
        )


class Channel(Protocol):
    provider: str

    async def send(self, message: Message) -> SendResult: ...

    async def accepted(self, notification_id: str) -> bool | None:
        """Whether the provider took this message: True, False, or None when it cannot tell.

        The dispatcher asks after a crash between its "attempting" and "done" records.
        """
        ...

    async def close(self) -> None: ...


def log_attempt(message: Message, result: SendResult) -> None:
    """One key-value line per provider call (recipients are masked by the log processors)."""
    structlog.get_logger("channels").info(
        f"{result.provider}.attempt",
        notification_id=message.notification_id,
        channel=message.channel,
        outcome=result.outcome,
        reason=result.reason or None,
        error_code=result.error_code,
    )
