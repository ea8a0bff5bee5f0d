"""Remembering recent event ids per customer, so a producer's retry is processed once.

Bounded two ways: ids older than `window` (in event time, relative to the
newest event seen for that customer) are forgotten, and at most `max_ids` are
kept. Event time, not the wall clock, so a replay decides exactly as the first
run did. A retry that arrives after both bounds is processed again: the
engine's deterministic notification ids are the second line of defence.
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

    @classmethod
    def from_json(cls, raw: Any, window: timedelta, max_ids: int) -> RecentIds:
        entries = [(eid, datetime.fromisoformat(at)) for eid, at in (raw or [])]
        return cls(entries, window, max_ids)

    def to_json(self) -> list[list[str]]:
        return [[eid, at.isoformat()] for eid, at in self._entries]

    def __contains__(self, event_id: str) -> bool:
        return any(eid == event_id for eid, _ in self._entries)

    def add(self, event_id: str, occurred_at: datetime) -> None:
        self._entries.append((event_id, occurred_at))
        newest = max(at for _, at in self._entries)
        kept = [(eid, at) for eid, at in self._entries if newest - at <= self._window]
        self._entries = kept[-self._max :]
