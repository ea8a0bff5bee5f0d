"""Issue 19: nothing a regulation requires is lost to the order inputs arrive in, or late.

An event read before the customer's profile finds no contact point. Its step
waits (`awaiting_contact`) up to the policy's `contact_wait`; the profile sends
it when it comes in time, a letter goes when it does not, and never both. A step
with a `deadline` goes by then: by a channel the guards allow before it, else as
a letter, never after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.loader import PolicySource, load_sources
from policies.simulator import simulate
from schemas.events import Event, event_from_dict
from schemas.examples import EXAMPLE_DATA

POLICY = load_sources(
    [
        PolicySource(
            "p.yaml",
            """
version: 1
contact_wait: 1d
categories:
  notices: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false, required: true}
contact_windows:
  default: {start: "08:00", end: "21:00"}
escalations:
  validation:
    trigger: payment.missed
    category: notices
    ladders:
      - name: only
        steps:
          - {after: 0h, send: {channel: email, template: t, fallback: [sms]}}
""",
        )
    ]
)
MISSED_AT = datetime(2026, 11, 20, 15, tzinfo=UTC)


def event(kind: str, at: datetime, data: dict[str, object]) -> Event:
    return event_from_dict(
        {
            "event_id": f"evt-{kind}-{at.isoformat()}",
            "type": kind,
            "occurred_at": at.isoformat(),
            "customer_id": "C-1",
            "account_id": None if kind.startswith("customer.") else "A-1",
            "source": "test",
            "data": data,
        }
    )


@settings(max_examples=80, deadline=None)
@example(delay=0, has_contact=True)
@example(delay=24 * 60, has_contact=True)
@example(delay=None, has_contact=False)
@given(
    delay=st.one_of(st.none(), st.integers(min_value=-600, max_value=3 * 24 * 60)),
    has_contact=st.booleans(),
)
def test_a_required_step_is_sent_once_or_goes_by_letter_never_both_never_neither(
    delay: int | None, has_contact: bool
) -> None:
    """`delay`: minutes from the missed payment to the profile (negative: before it;
    None: never). A profile without email or phone is no contact point."""
    profile = dict(EXAMPLE_DATA["customer.profile.updated"])
    if not has_contact:
        profile.update(phones=[], emails=[])
    events = [event("payment.missed", MISSED_AT, dict(EXAMPLE_DATA["payment.missed"]))]
    if delay is not None:
        events.append(
            event("customer.profile.updated", MISSED_AT + timedelta(minutes=delay), profile)
        )
    events.sort(key=lambda e: e.occurred_at)
    decisions, _ = simulate(events, POLICY, MISSED_AT + timedelta(days=10))
    sent = [d for d in decisions if d.action == "sent"]
    letters = [d for d in decisions if (d.action, d.reason) == ("handoff", "letter")]
    waits = [d for d in decisions if d.reason == "awaiting_contact"]
    assert len(sent) + len(letters) == 1, decisions
    reachable = delay is not None and has_contact
    if reachable and delay < 24 * 60:
        assert len(sent) == 1
        assert sent[0].at == max(MISSED_AT, MISSED_AT + timedelta(minutes=delay))
    else:
        assert len(letters) == 1 and letters[0].at == MISSED_AT + timedelta(days=1)
    assert all(d.until == MISSED_AT + timedelta(days=1) for d in waits)
    assert bool(waits) == (not reachable or delay >= 0)  # the event first at a tie


DEADLINES = load_sources(
    [
        PolicySource(
            "p.yaml",
            """
version: 1
categories:
  collections: {contact_windows: enforce, frequency_caps: enforce, honours_cease: true}
contact_windows:
  default: {start: "08:00", end: "21:00"}
  voice: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "20:00"}
frequency_caps:
  - {channel: voice, max: 7, per: 7d, scope: account}
escalations:
  notice:
    trigger: payment.missed
    category: collections
    ladders:
      - name: only
        steps:
          - {after: 0h, send: {channel: voice, template: t, fallback: [email]}, deadline: 1d}
  voice-only:
    trigger: payment.received
    category: collections
    ladders:
      - name: only
        steps:
          - {after: 0h, send: {channel: voice, template: t}, deadline: 1d}
""",
        )
    ]
)
# Saturday 2026-11-21 16:00Z is 10:00 in Chicago: email may go, a call not before Monday.
SAT_10_CHI = datetime(2026, 11, 21, 16, tzinfo=UTC)


def with_profile(*events: Event) -> list[Event]:
    profile = event(
        "customer.profile.updated",
        SAT_10_CHI - timedelta(days=30),
        dict(EXAMPLE_DATA["customer.profile.updated"]),
    )
    return [profile, *events]


def test_a_step_with_a_deadline_goes_early_by_another_channel_rather_than_late() -> None:
    missed = event("payment.missed", SAT_10_CHI, dict(EXAMPLE_DATA["payment.missed"]))
    decisions, _ = simulate(with_profile(missed), DEADLINES, SAT_10_CHI + timedelta(days=5))
    sent = [(d.action, d.reason, d.channel, d.at) for d in decisions if d.step == 0]
    assert sent == [("sent", "fallback", "email", SAT_10_CHI)]
    assert "before the deadline" not in (decisions[-1].detail or "")


def test_with_no_channel_allowed_before_the_deadline_a_letter_goes_at_once() -> None:
    received = event("payment.received", SAT_10_CHI, dict(EXAMPLE_DATA["payment.received"]))
    decisions, _ = simulate(with_profile(received), DEADLINES, SAT_10_CHI + timedelta(days=5))
    rows = [(d.action, d.reason, d.at) for d in decisions if d.step == 0]
    assert rows == [("handoff", "letter", SAT_10_CHI)]
    assert "no channel the guards allow before the deadline" in (decisions[1].detail or "")
    assert not [d for d in decisions if d.action == "sent"]


@settings(max_examples=120, deadline=None)
@given(
    minutes=st.integers(min_value=0, max_value=14 * 24 * 60),
    kind=st.sampled_from(["payment.missed", "payment.received"]),
    profile=st.booleans(),
)
def test_a_step_with_a_deadline_is_sent_or_a_letter_by_the_deadline_never_after(
    minutes: int, kind: str, profile: bool
) -> None:
    at = SAT_10_CHI + timedelta(minutes=minutes)
    trigger = event(kind, at, dict(EXAMPLE_DATA[kind]))
    events = with_profile(trigger) if profile else [trigger]
    decisions, _ = simulate(events, DEADLINES, at + timedelta(days=10))
    outcomes = [
        d for d in decisions if d.step == 0 and (d.action == "sent" or d.reason == "letter")
    ]
    assert len(outcomes) == 1, decisions
    assert outcomes[0].at <= at + timedelta(days=1)
