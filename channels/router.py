"""One `Channel` in front of several: a message goes to the one serving its channel."""

from __future__ import annotations

from collections.abc import Mapping

from channels.base import Channel, Message, SendResult
from schemas.types import Channel as ChannelName


class ChannelRouter:
    provider = "router"

    def __init__(self, routes: Mapping[ChannelName, Channel]) -> None:
        self.routes = dict(routes)

    def provider_for(self, channel: ChannelName) -> str:
        return self.routes[channel].provider

    def channel_for(self, channel: ChannelName) -> Channel | None:
        return self.routes.get(channel)

    async def send(self, message: Message) -> SendResult:
        route = self.routes.get(message.channel)
        if route is None:
            return SendResult(
                "permanent",
                self.provider,
                reason="no_channel_configured",
                detail=f"no implementation serves {message.channel}",
            )
        return await route.send(message)

    async def accepted(self, notification_id: str) -> bool | None:
        """True if any provider took it; False only if every provider can say it did not."""
        answers = [await c.accepted(notification_id) for c in self._distinct()]
        if any(a is True for a in answers):
            return True
        return False if answers and all(a is False for a in answers) else None

    async def close(self) -> None:
        for channel in self._distinct():
            await channel.close()

    def _distinct(self) -> list[Channel]:
        return list({id(c): c for c in self.routes.values()}.values())
