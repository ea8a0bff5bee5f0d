"""Where the pipeline's "now" comes from.

`wall`: the real clock (production). `event`: the time the current input
occurred, so a replay of last month's events decides as it would have then
(the demo and the tests).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

ClockMode = Literal["wall", "event"]


def now_for(mode: ClockMode, occurred_at: datetime | None) -> datetime:
    if mode == "event" and occurred_at is not None:
        return occurred_at.astimezone(UTC)
    return datetime.now(UTC)
