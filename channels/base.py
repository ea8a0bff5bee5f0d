"""The channel interface every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one attempt ended: the dispatcher decides what comes next from `outcome`."""

    outcome: Literal["accepted", "transient", "permanent"]
    provider: str
    provider_message_id: str | None = None
    error_code: str | None = None
    detail: str = ""


class Channel(Protocol):
    provider: str

    async def send(self, message: Message) -> SendResult: ...

    async def accepted(self, notification_id: str) -> bool | None:
        """Whether the provider took this message: True, False, or None when it cannot tell.

        The dispatcher asks after a crash between its "attempting" and "done" records.
        """
        ...

    async def close(self) -> None: ...
