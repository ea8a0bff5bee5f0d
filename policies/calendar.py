"""When a step falls due: `after` counted from a case's origin.

Fixed durations add to the instant. Business days (`3bd`) count Monday to
Friday, minus the policy's holidays, on the customer's own calendar, and keep
the local time of day: "3 business days after Friday 09:00" is Wednesday 09:00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from policies.model import Duration


def due_after(
    origin: datetime, after: Duration, zone: str | None, holidays: frozenset[date]
) -> datetime:
    """The instant `after` past `origin`; business days are counted in `zone` (UTC if None)."""
    fixed = after.fixed
    if fixed is not None:
        return origin + fixed
    tz = ZoneInfo(zone) if zone else UTC
    local = origin.astimezone(tz)
    day, left = local.date(), after.amount
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            left -= 1
    moved = datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=tz)
    return moved.astimezone(origin.tzinfo)
