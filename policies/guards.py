"""The compliance guards a send must pass at its instant: contact windows and frequency caps.

Each guard says not only "no" but "not before when": windows from their
boundaries, caps from the moment the oldest counted contact leaves the cap's
window. A cap in days counts calendar days in the customer's zone by default,
as Reg F does ("within a period of seven consecutive days", the day of the
conversation as day 1): the next call may go at the first allowed minute of day
8, not 168 hours later. `counting: rolling` keeps a fixed length instead. The
earliest instant every guard allows is their common fixed point, so a blocked
step is deferred to a computed instant, never polled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from policies.conditions import holds
from policies.model import Category, FrequencyCap, PolicySet, Window
from policies.state import Contact, Conversation, CustomerState
from policies.windows import next_allowed
from schemas.types import Channel

_MAX_ROUNDS = 32
"""Window and cap hand the instant back and forth; a handful of rounds always settles it."""


@dataclass(frozen=True, slots=True)
class GuardBlock:
    reason: str
    """`contact_window` or `frequency_cap`: the guard that says no now."""
    detail: str
    until: datetime | None
    """The earliest instant every guard allows; None if none in the windows' horizon."""


Facts = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class History:
    """What the caps count: the sends and answered calls so far, this instant's included."""

    contacts: Sequence[Contact]
    conversations: Sequence[Conversation]


def zones(state: CustomerState, policy: PolicySet) -> list[str]:
    """Every zone the customer may be in; none known means every fallback zone."""
    return list(state.profile.time_zones) or list(policy.time_zone_fallback) or ["UTC"]


def window_for(policy: PolicySet, channel: Channel) -> Window:
    return policy.contact_windows.get(channel) or policy.contact_windows["default"]


def check(
    state: CustomerState,
    history: History,
    policy: PolicySet,
    category_name: str,
    category: Category,
    channel: Channel,
    account_id: str | None,
    now: datetime,
    facts: Facts,
) -> GuardBlock | None:
    """None when `channel` may be used at `now`; else which guard blocks, and until when."""
    window = window_for(policy, channel) if category.contact_windows == "enforce" else None
    caps = (
        applicable_caps(policy, category_name, channel, facts)
        if category.frequency_caps == "enforce"
        else []
    )
    where = zones(state, policy)
    quiet = state.preferences.quiet_hours

    def window_free(at: datetime) -> datetime | None:
        return at if window is None else next_allowed(at, where, window, quiet)

    def caps_free(at: datetime) -> tuple[datetime, str] | None:
        latest: tuple[datetime, str] | None = None
        for cap in caps:
            free = cap_free_at(history, cap, channel, account_id, at, where)
            if free is not None and (latest is None or free[0] > latest[0]):
                latest = free
        return latest

    first_window = window_free(now)
    first_cap = caps_free(now)
    if first_window == now and first_cap is None:
        return None
    if first_window != now:
        reason = "contact_window"
        detail = f"outside the {channel} window in {', '.join(where)}"
    else:
        assert first_cap is not None
        reason, detail = "frequency_cap", first_cap[1]
    at: datetime | None = now
    for _ in range(_MAX_ROUNDS):
        assert at is not None
        at = window_free(at)
        if at is None:
            break
        blocked = caps_free(at)
        if blocked is None:
            return GuardBlock(reason, detail, at)
        at = blocked[0]
    return GuardBlock(reason, detail + "; no allowed instant found", None)


def applicable_caps(
    policy: PolicySet, category_name: str, channel: Channel, facts: Facts
) -> list[FrequencyCap]:
    """Every cap that counts this send: its channel and category match and its `when` holds."""
    return [
        cap
        for cap in _caps_for(policy, category_name, channel)
        if cap.when is None or holds(cap.when, facts())
    ]


_CAPS: dict[tuple[str, str, str], list[FrequencyCap]] = {}


def _caps_for(policy: PolicySet, category_name: str, channel: Channel) -> list[FrequencyCap]:
    """The caps whose channel and category match, kept per policy version (its content)."""
    key = (policy.version, category_name, channel)
    found = _CAPS.get(key)
    if found is None:
        found = _CAPS[key] = [
            cap
            for cap in policy.frequency_caps
            if cap.matches_channel(channel)
            and (cap.categories is None or category_name in cap.categories)
        ]
    return found


def cap_free_at(
    history: History,
    cap: FrequencyCap,
    channel: Channel,
    account_id: str | None,
    at: datetime,
    where: Sequence[str] = ("UTC",),
) -> tuple[datetime, str] | None:
    """None when `cap` allows a send at `at`; else the instant it will, and why not now.

    `where`: the customer's zones; a calendar-day cap holds in each of them."""
    days = cap.calendar_days
    if cap.after_conversation is not None:
        talks = [
            c.at
            for c in history.conversations
            if (cap.scope == "customer" or c.account_id == account_id) and c.at <= at
        ]
        if days is not None:
            free, _ = _calendar_free(talks, 1, days, at, where)
        else:
            look = cap.after_conversation.fixed
            assert look is not None
            recent = [t for t in talks if at - look < t]
            free = max(recent) + look if recent else None
        if free is None:
            return None
        return free, f"a conversation took place; no {channel} for {_length(cap, days)}"
    assert cap.max is not None and cap.per is not None
    everyone = cap.scope == "customer"
    categories, channels = cap.categories, cap.channels
    counted = [
        c.at
        for c in history.contacts
        if c.at <= at
        and (everyone or c.account_id == account_id)
        and (channels is None or c.channel in channels)
        and (categories is None or c.category in categories)
    ]
    if days is not None:
        free, shown = _calendar_free(counted, cap.max, days, at, where)
        if free is None:
            return None
    else:
        per = cap.per.fixed
        assert per is not None
        inside = sorted(t for t in counted if at - per < t)
        if len(inside) < cap.max:
            return None
        free, shown = inside[len(inside) - cap.max] + per, len(inside)
    return (
        free,
        f"{shown} of at most {cap.max} {_channels(cap)} contacts per {_length(cap, days)} "
        f"for this {cap.scope}",
    )


def _calendar_free(
    times: Sequence[datetime], most: int, days: int, at: datetime, where: Sequence[str]
) -> tuple[datetime | None, int]:
    """When fewer than `most` of `times` fall on the `days` local days ending today, in
    every zone: None; else the first instant of the local day when one fewer would. With
    the most of `times` on those days in any zone (what the ledger's detail shows)."""
    latest: datetime | None = None
    most_seen = 0
    for zone in where:
        tz = ZoneInfo(zone)
        today = at.astimezone(tz).date()
        first = today - timedelta(days=days - 1)
        dates = sorted(d for d in (t.astimezone(tz).date() for t in times) if first <= d <= today)
        most_seen = max(most_seen, len(dates))
        if len(dates) < most:
            continue
        oldest = dates[len(dates) - most]
        free = datetime.combine(oldest + timedelta(days=days), time(0), tzinfo=tz)
        free = free.astimezone(at.tzinfo)
        if latest is None or free > latest:
            latest = free
    return latest, most_seen


def _length(cap: FrequencyCap, days: int | None) -> str:
    length = cap.per or cap.after_conversation
    return f"{length} ({days} calendar days)" if days is not None else f"{length} (rolling)"


def lookback(policy: PolicySet) -> timedelta:
    """How long contacts and conversations must be remembered for the caps to count them."""
    longest = timedelta(0)
    for cap in policy.frequency_caps:
        for length in (cap.per, cap.after_conversation):
            if length is not None and length.fixed is not None:
                # A calendar day reaches back to its local midnight, up to 26 hours from UTC.
                slack = timedelta(days=2) if cap.calendar_days is not None else timedelta(0)
                longest = max(longest, length.fixed + slack)
    return longest


def _channels(cap: FrequencyCap) -> str:
    if isinstance(cap.channel, list):
        return "/".join(cap.channel)
    return str(cap.channel)
