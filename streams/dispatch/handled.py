"""What the dispatcher remembers per customer, so a restart never sends a message twice.

Kept in the `dispatched-ids` table, one entry per notification id (see
streams/dispatch/dispatcher.py for when each status is written).
"""

from __future__ import annotations

from typing import Any


class HandledIds:
    """The dispatcher's memory per customer: notification id -> "attempting" | "done".

    Insertion-ordered and capped at `max_ids`: the oldest ids go first. The
    engine's ids are deterministic, so a replay names the same ids it did before.
    """

    def __init__(self, entries: dict[str, str], max_ids: int) -> None:
        self._entries = entries
        self._max = max_ids

    @classmethod
    def from_json(cls, raw: Any, max_ids: int) -> HandledIds:
        return cls(dict(raw or {}), max_ids)

    def to_json(self) -> dict[str, str]:
        return dict(self._entries)

    def get(self, notification_id: str) -> str | None:
        return self._entries.get(notification_id)

    def set(self, notification_id: str, status: str) -> HandledIds:
        entries = {k: v for k, v in self._entries.items() if k != notification_id}
        entries[notification_id] = status
        kept = dict(list(entries.items())[-self._max :])
        return HandledIds(kept, self._max)
