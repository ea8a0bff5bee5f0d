from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import windows
from policies.model import Window
from policies.windows import allowed, next_allowed
from schemas.customer import QuietHours

DAILY = Window(start="08:00", end="21:00")
VOICE = Window(days=["mon", "tue", "wed", "thu", "fri", "sat"], start="08:00", end="21:00")
US = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_the_window_is_now() -> None:
    at = utc(2026, 11, 20, 14)  # 08:00 in Chicago
    assert next_allowed(at, ["America/Chicago"], DAILY, None) == at


def test_before_the_window_waits_for_it() -> None:
    at = utc(2026, 11, 20, 14)  # 07:00 in Denver
    assert next_allowed(at, ["America/Denver"], DAILY, None) == utc(2026, 11, 20, 15)


def test_every_candidate_zone_must_allow_it() -> None:
    at = utc(2026, 11, 20, 14)  # 09:00 New York, 06:00 Los Angeles
    assert next_allowed(at, US, DAILY, None) == utc(2026, 11, 20, 16)


def test_window_end_in_any_zone_closes_it() -> None:
    at = utc(2026, 11, 21, 2, 30)  # 21:30 New York: wait for 08:00 New York... and LA
    assert next_allowed(at, US, DAILY, None) == utc(2026, 11, 21, 16)


def test_voice_waits_over_sunday() -> None:
    at = utc(2026, 11, 22, 15)  # Sunday 10:00 New York
    assert next_allowed(at, ["America/New_York"], VOICE, None) == utc(2026, 11, 23, 13)


def test_quiet_hours_narrow_and_may_wrap_midnight() -> None:
    quiet = QuietHours(start="20:00", end="09:00")
    at = utc(2026, 11, 20, 14)  # 08:00 Chicago, inside the window but quiet
    assert next_allowed(at, ["America/Chicago"], DAILY, quiet) == utc(2026, 11, 20, 15)
    evening = utc(2026, 11, 21, 2, 30)  # 20:30 Chicago
    assert not allowed(evening, ["America/Chicago"], DAILY, quiet)


def test_daylight_saving_change() -> None:
    # 2026-11-01: New York falls back from EDT (UTC-4) to EST (UTC-5).
    assert next_allowed(utc(2026, 11, 1, 3), ["America/New_York"], DAILY, None) == utc(
        2026, 11, 1, 13
    )
    assert next_allowed(utc(2026, 10, 31, 3), ["America/New_York"], DAILY, None) == utc(
        2026, 10, 31, 12
    )


@settings(max_examples=200, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    zones=st.lists(
        st.sampled_from([*US, "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    quiet=st.none()
    | st.builds(
        QuietHours,
        start=st.sampled_from(["19:00", "22:00", "12:00"]),
        end=st.sampled_from(["07:00", "09:30", "13:00"]),
    ),
)
def test_next_allowed_is_allowed_and_nothing_earlier_is(
    at: datetime, zones: list[str], quiet: QuietHours | None
) -> None:
    found = next_allowed(at, zones, VOICE, quiet)
    if found is None:
        return
    assert found >= at
    assert allowed(found, zones, VOICE, quiet)
    # No allowed minute was skipped between `at` and the answer.
    step = timedelta(minutes=15)
    probe = at
    while probe < found:
        assert not allowed(probe, zones, VOICE, quiet)
        probe += step


@settings(max_examples=300, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    other=st.integers(min_value=0, max_value=59_999_999),
    zones=st.lists(st.sampled_from([*US, "Asia/Kolkata"]), min_size=1, max_size=3, unique=True),
    quiet=st.none() | st.just(QuietHours(start="20:00", end="09:00")),
)
def test_an_answer_kept_for_the_minute_is_the_answer_searched(
    at: datetime, other: int, zones: list[str], quiet: QuietHours | None
) -> None:
    """The cache answers by minute: any instant of that minute must get what a search gives."""
    minute = at.replace(second=0, microsecond=0)
    first = minute + timedelta(microseconds=other)
    next_allowed(first, zones, VOICE, quiet)  # fills the cache for this minute
    assert next_allowed(at, zones, VOICE, quiet) == windows._search(at, zones, VOICE, quiet)


def test_a_kept_answer_comes_back_in_the_callers_zone() -> None:
    chicago = ZoneInfo("America/Chicago")
    at = utc(2026, 11, 21, 4)  # 22:00 in Chicago: outside the window
    in_utc = next_allowed(at, ["America/Chicago"], DAILY, None)
    in_chicago = next_allowed(at.astimezone(chicago), ["America/Chicago"], DAILY, None)
    assert in_utc == in_chicago
    assert in_utc is not None and in_utc.tzinfo is UTC
    assert in_chicago is not None and in_chicago.tzinfo is chicago


def test_before_1973_every_instant_is_searched() -> None:
    """Liberia's offset was -0:44:30 until 1972: one UTC minute held two different answers."""
    zones = ["Africa/Monrovia"]
    opens = utc(1971, 6, 1, 8, 44, 30)  # 08:00:00 in Monrovia
    assert next_allowed(utc(1971, 6, 1, 8, 44, 40), zones, DAILY, None) == utc(
        1971, 6, 1, 8, 44, 40
    )
    assert next_allowed(utc(1971, 6, 1, 8, 44, 10), zones, DAILY, None) == opens
