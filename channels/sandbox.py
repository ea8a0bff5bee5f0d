"""The sandbox channel: every message is written to a JSONL outbox instead of a provider.

The demo and the tests read the outbox to see exactly what a customer would
have received. Writes go through a thread so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path

import structlog

from channels.base import Message, SendResult

log = structlog.get_logger(__name__)


class SandboxChannel:
    provider = "sandbox"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.parent.mkdir(parents=True, exist_ok=True)

    async def send(self, message: Message) -> SendResult:
        line = json.dumps(asdict(message), ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._append, line)
        log.info(
            "sandbox.sent",
            notification_id=message.notification_id,
            channel=message.channel,
            recipient=message.recipient,
            customer_id=message.customer_id,
        )
        return SendResult("accepted", self.provider, provider_message_id=message.notification_id)

    async def accepted(self, notification_id: str) -> bool | None:
        """The outbox is the sandbox's provider-side record, so it can always tell."""
        sent = await asyncio.to_thread(read_outbox, self.outbox)
        return any(m.get("notification_id") == notification_id for m in sent)

    def _append(self, line: str) -> None:
        """One `write` on an O_APPEND file: a line lands whole, even if the worker is killed."""
        fd = os.open(self.outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    async def close(self) -> None:
        return None


def read_outbox(path: Path) -> list[dict[str, object]]:
    """Every message the sandbox recorded, in order (for the demo and the tests)."""
    if not path.exists():
        return []
    # A reader can meet a line still being written: only lines with their newline count.
    complete = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in complete if line]
