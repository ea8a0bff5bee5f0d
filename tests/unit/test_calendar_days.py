"""Caps counted as Reg F counts them (issue 27, part 5): calendar days in the customer's zone.

Reg F 1006.14(b)(2)(ii): no call "within a period of seven consecutive days after
having had a telephone conversation", the conversation's date as day 1. So the next
call may go at the first allowed minute of day 8, not 168 hours after the call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies.engine import Tick, decide
from policies.loader import PolicyLoadError, PolicySource, load_sources
from policies.state import CustomerState
from tests.conftest import POLICIES
from tests.unit.test_engine import answered_call, customer, event

CALLS = """
version: 1
escalations:
  calls:
    trigger: payment.missed
    category: collections
    ladders:
      - name: calls
        steps:
          - {after: 0h, send: {channel: voice, template: collections-call}}
          - {after: 2d, send: {channel: voice, template: collections-call}}
"""
MON_1000_CHI = datetime(2026, 11, 23, 16, tzinfo=UTC)


def next_call_after_a_conversation(guards: str) -> datetime | None:
    policy = load_sources([PolicySource("00.yaml", guards), PolicySource("10.yaml", CALLS)])
    out = decide(customer(policy), event("payment.missed", MON_1000_CHI), MON_1000_CHI, policy)
    [call] = out.notifications
    talked = MON_1000_CHI + timedelta(minutes=5)
    answered = answered_call(call.notification_id, talked)
    state: CustomerState = decide(out.state, answered, talked, policy).state
    later = decide(state, Tick("C-1"), MON_1000_CHI + timedelta(days=2), policy)
    [deferred] = [d for d in later.decisions if d.action == "deferred"]
    assert deferred.reason == "frequency_cap"
    return deferred.until


def test_after_a_conversation_on_day_1_the_next_call_goes_at_0800_on_day_8() -> None:
    guards = (POLICIES / "00-guards.yaml").read_text()
    day_8_0800_chicago = datetime(2026, 11, 30, 14, tzinfo=UTC)  # Monday 08:00 CST
    assert next_call_after_a_conversation(guards) == day_8_0800_chicago


def test_a_rolling_window_waits_168_hours_when_the_set_asks_for_it() -> None:
    guards = (POLICIES / "00-guards.yaml").read_text()
    rolling = guards.replace(
        "after_conversation: 7d, scope: account}",
        "after_conversation: 7d, scope: account, counting: rolling}",
    )
    assert rolling != guards
    assert next_call_after_a_conversation(rolling) == MON_1000_CHI + timedelta(days=7, minutes=5)


def test_seven_calls_in_seven_days_counts_the_customers_days() -> None:
    """Seven calls that ended on Monday allow the next on the next Monday, at 08:00 local."""
    guards = (POLICIES / "00-guards.yaml").read_text()
    # Only the 7-in-7 cap: the caller never got through, and no daily cap on contacts.
    guards = "\n".join(
        line
        for line in guards.splitlines()
        if "after_conversation" not in line and "{channel: any" not in line
    )
    seven = CALLS.replace(
        "          - {after: 2d, send: {channel: voice, template: collections-call}}\n",
        "".join(
            f"          - {{after: {n}m, send: {{channel: voice, template: collections-call}}}}\n"
            for n in range(1, 8)
        ),
    )
    policy = load_sources([PolicySource("00.yaml", guards), PolicySource("10.yaml", seven)])
    out = decide(customer(policy), event("payment.missed", MON_1000_CHI), MON_1000_CHI, policy)
    state, found = out.state, list(out.decisions)
    for minute in range(1, 8):
        at = MON_1000_CHI + timedelta(minutes=minute)
        step = decide(state, Tick("C-1"), at, policy)
        state, found = step.state, [*found, *step.decisions]
    assert sum(d.action == "sent" for d in found) == 7
    [deferred] = [d for d in found if d.action == "deferred"]
    assert deferred.until == datetime(2026, 11, 30, 14, tzinfo=UTC)
    assert "7 of at most 7 voice contacts per 7d (7 calendar days)" in (deferred.detail or "")


def test_calendar_days_on_a_length_in_hours_is_refused_where_it_is_written() -> None:
    guards = (
        (POLICIES / "00-guards.yaml")
        .read_text()
        .replace(
            "{channel: sms,   max: 2, per: 1d, scope: customer}",
            "{channel: sms,   max: 2, per: 6h, scope: customer, counting: calendar_days}",
        )
    )
    with pytest.raises(PolicyLoadError) as info:
        load_sources([PolicySource("00.yaml", guards), PolicySource("10.yaml", CALLS)])
    [error] = [str(e) for e in info.value.errors]
    line = next(n for n, text in enumerate(guards.splitlines(), 1) if "per: 6h" in text)
    assert error.startswith(f"00.yaml:{line}:")
    assert "counting: calendar_days needs a length in days or weeks" in error
