"""Remembering recent event ids per customer, so a producer's retry is processed once.

Bounded two ways: an id is forgotten `window` after it was seen (the time it
was processed, not when the event occurred: producers retry in wall time, and
an event-time window would forget an old event as soon as a newer one came),
and at most `max_ids` are kept per customer. A retry that arrives after both
bounds is processed again; the engine's deterministic notification ids are the
second line of defence.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


class RecentIds:
    def __init__(
        self, entries: list[tuple[str, datetime]], window: timedelta, max_ids: int
    ) -> None:
        self._entries = entries
        self._window = window
        self._max = max_ids
        self.changed = False
        """Whether `add` was called: only then is there anything to write back."""

    @classmethod
    def from_json(cls, raw: Any, window: timedelta, max_ids: int) -> RecentIds:
        entries = [(eid, datetime.fromisoformat(at)) for eid, at in (raw or [])]
        return cls(entries, window, max_ids)

    def to_json(self) -> list[list[str]]:
        return [[eid, at.isoformat()] for eid, at in self._entries]

    def __contains__(self, event_id: str) -> bool:
        return any(eid == event_id for eid, _ in self._entries)

    def add(self, event_id: str, seen_at: datetime) -> None:
        self.changed = True
        self._entries.append((event_id, seen_at))
        newest = max(at for _, at in self._entries)
        kept = [(eid, at) for eid, at in self._entries if newest - at <= self._window]
        self._entries = kept[-self._max :]
