"""Contact windows in the customer's local time: when may we reach them?

The allowed instants are a union of intervals per zone; their intersection
starts either at `at` itself or at one of the zones' interval starts (a window
opening or a quiet period ending). So the earliest allowed instant is found by
checking `at` and those boundaries in time order: computed, not polled.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from policies.model import WEEKDAYS, Window
from schemas.customer import QuietHours

HORIZON_DAYS = 15
"""Far enough for any weekly window plus a DST change; none found means never."""


def allowed(at: datetime, zones: list[str], window: Window, quiet: QuietHours | None) -> bool:
    """True when `at` is inside the window, and outside quiet hours, in every zone."""
    return all(_allowed_in(at, ZoneInfo(z), window, quiet) for z in zones)


def next_allowed(
    at: datetime, zones: list[str], window: Window, quiet: QuietHours | None
) -> datetime | None:
    """The earliest instant at or after `at` allowed in every zone; None if none in 15 days."""
    if allowed(at, zones, window, quiet):
        return at
    for candidate in _boundaries(at, zones, window, quiet):
        if allowed(candidate, zones, window, quiet):
            return candidate
    return None


def _allowed_in(at: datetime, zone: ZoneInfo, window: Window, quiet: QuietHours | None) -> bool:
    local = at.astimezone(zone)
    if WEEKDAYS[local.weekday()] not in window.days:
        return False
    hm = local.strftime("%H:%M")
    if not window.start <= hm < window.end:
        return False
    if quiet is None or quiet.start == quiet.end:
        return True
    if quiet.start < quiet.end:
        return not quiet.start <= hm < quiet.end
    return not (hm >= quiet.start or hm < quiet.end)  # quiet hours that wrap midnight


def _boundaries(
    at: datetime, zones: list[str], window: Window, quiet: QuietHours | None
) -> list[datetime]:
    starts = [window.start] + ([quiet.end] if quiet is not None else [])
    found: set[datetime] = set()
    for name in zones:
        zone = ZoneInfo(name)
        first: date = at.astimezone(zone).date()
        for offset in range(HORIZON_DAYS):
            day = first + timedelta(days=offset)
            for hm in starts:
                local = datetime.combine(day, time.fromisoformat(hm), tzinfo=zone)
                instant = local.astimezone(at.tzinfo)
                if instant > at:
                    found.add(instant)
    return sorted(found)
