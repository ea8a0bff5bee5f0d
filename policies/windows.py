"""Contact windows in the customer's local time: when may we reach them?

The allowed instants are a union of intervals per zone; their intersection
starts either at `at` itself or at one of the zones' interval starts (a window
opening or a quiet period ending). So the earliest allowed instant is found by
checking `at` and those boundaries in time order: computed, not polled.

Both answers depend only on the minute `at` falls in: windows and quiet hours
are whole local minutes, and every zone's offset since 1972 (when Liberia left
-0:44:30) is a whole number of minutes. Customers in one zone share that
minute's answer, so `next_allowed` keeps it (`_ANSWERS`, bounded). That is
memoising a pure function: the engine stays deterministic, whatever the cache
holds.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from policies.model import WEEKDAYS, Window
from schemas.customer import QuietHours

HORIZON_DAYS = 15
"""Far enough for any weekly window plus a DST change; none found means never."""

_NEAR = timedelta(days=1)
"""First look a day ahead: almost every deferral (overnight) ends within it."""


def allowed(at: datetime, zones: list[str], window: Window, quiet: QuietHours | None) -> bool:
    """True when `at` is inside the window, and outside quiet hours, in every zone."""
    return all(_allowed_in(at, _zone(z), window, quiet) for z in zones)


_MISSING = object()
_ANSWERS: dict[tuple[object, ...], datetime | bool | None] = {}
_ANSWERS_MAX = 100_000
"""Distinct (minute, zones, window, quiet hours) answers kept; then the cache starts over."""
_WHOLE_MINUTES_SINCE = 1973
"""From this year on, every zone's UTC offset is whole minutes: a minute's answer is exact."""


def next_allowed(
    at: datetime, zones: list[str], window: Window, quiet: QuietHours | None
) -> datetime | None:
    """The earliest instant at or after `at` allowed in every zone; None if none in 15 days."""
    if at.year < _WHOLE_MINUTES_SINCE:
        return _search(at, zones, window, quiet)
    key = (
        int(at.timestamp() // 60),
        tuple(zones),
        window.start,
        window.end,
        tuple(window.days),
        quiet.start if quiet is not None else None,
        quiet.end if quiet is not None else None,
    )
    found = _ANSWERS.get(key, _MISSING)
    if found is _MISSING:
        found = _search(at, zones, window, quiet)
        if len(_ANSWERS) >= _ANSWERS_MAX:
            _ANSWERS.clear()
        _ANSWERS[key] = True if found is at else found
    if found is True:
        return at  # allowed in `at`'s minute: `at` itself is the answer
    assert found is None or isinstance(found, datetime)
    if found is not None and found.tzinfo is not at.tzinfo:
        found = found.astimezone(at.tzinfo)
    return found


def _search(
    at: datetime, zones: list[str], window: Window, quiet: QuietHours | None
) -> datetime | None:
    if allowed(at, zones, window, quiet):
        return at
    # A boundary on local day offset 3 or later lies at least two days (less an hour
    # of daylight saving) after `at`, so the first allowed boundary before `near`
    # among the first three local days is the earliest of all.
    near = at + _NEAR
    for candidate in _boundaries(at, zones, window, quiet, 3):
        if candidate >= near:
            break
        if allowed(candidate, zones, window, quiet):
            return candidate
    for candidate in _boundaries(at, zones, window, quiet, HORIZON_DAYS):
        if allowed(candidate, zones, window, quiet):
            return candidate
    return None


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@cache
def _clock(hm: str) -> time:
    return time.fromisoformat(hm)


@cache
def _minutes(hm: str) -> int:
    hours, minutes = hm.split(":")
    return int(hours) * 60 + int(minutes)


def _allowed_in(at: datetime, zone: ZoneInfo, window: Window, quiet: QuietHours | None) -> bool:
    local = at.astimezone(zone)
    if WEEKDAYS[local.weekday()] not in window.days:
        return False
    now = local.hour * 60 + local.minute
    if not _minutes(window.start) <= now < _minutes(window.end):
        return False
    if quiet is None or quiet.start == quiet.end:
        return True
    start, end = _minutes(quiet.start), _minutes(quiet.end)
    if start < end:
        return not start <= now < end
    return not (now >= start or now < end)  # quiet hours that wrap midnight


def _boundaries(
    at: datetime, zones: list[str], window: Window, quiet: QuietHours | None, days: int
) -> list[datetime]:
    starts = [window.start] + ([quiet.end] if quiet is not None else [])
    found: set[datetime] = set()
    for name in zones:
        zone = _zone(name)
        first: date = at.astimezone(zone).date()
        for offset in range(days):
            day = first + timedelta(days=offset)
            for hm in starts:
                local = datetime.combine(day, _clock(hm), tzinfo=zone)
                instant = local.astimezone(at.tzinfo)
                if instant > at:
                    found.add(instant)
    return sorted(found)
