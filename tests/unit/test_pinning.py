"""A policy change mid-ladder (issue 22, part 2): a case keeps its ladder, the guards move on.

Two generated policy sets, any stories, a change at any instant: every step of a
case is the step of the ladder it opened under, none is skipped or sent twice,
and every send after the change keeps the newer set's windows and caps.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.guards import zones as zones_of
from policies.loader import PolicyLoadError, PolicySource, load_sources
from policies.model import PolicySet
from policies.simulator import simulate
from policies.versions import PolicyVersions
from policies.windows import allowed
from schemas.decisions import Decision
from schemas.events import Event
from streams.cli import timeline
from tests.unit.test_engine_properties import (
    PROPERTY,
    START,
    _event,
    assert_caps_hold,
    policies,
    stories,
)

MISSED = {"amount_due": "10.00", "currency": "USD", "due_date": "2026-10-01", "days_past_due": 3}
"""A payment.missed's data, as every example here misses it."""
ONE_MISSED_PAYMENT = [
    _event("customer.profile.updated", START, None, {"emails": [{"address": "a@x.com"}]}),
    _event("payment.missed", START, "A-1", MISSED),
]


def run(
    old: PolicySet, new: PolicySet, change: datetime, events: list[Event]
) -> tuple[list[Decision], PolicyVersions, object]:
    versions = PolicyVersions(old)
    versions.add(change, new)
    decisions, sim = simulate(events, versions, START + timedelta(days=60))
    return decisions, versions, sim


def by_case(decisions: list[Decision]) -> dict[str, list[Decision]]:
    cases: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.case_id is not None:
            cases.setdefault(d.case_id, []).append(d)
    return cases


CHANGE = st.integers(0, 10 * 24 * 60).map(lambda m: START + timedelta(minutes=m))


@PROPERTY
@given(policies(), policies(), CHANGE, stories())
def test_a_case_runs_the_ladder_it_opened_under_to_its_end(
    old: PolicySet, new: PolicySet, change: datetime, events: list[Event]
) -> None:
    decisions, versions, _ = run(old, new, change, events)
    for case_id, rows in by_case(decisions).items():
        opened = next((d for d in rows if d.action == "opened"), None)
        if opened is None:
            continue  # suppressed before it opened
        pinned = versions.known(opened.policy_version)
        assert pinned is not None
        assert opened.escalation is not None and opened.ladder is not None
        ladder = next(
            lad
            for lad in pinned.escalations[opened.escalation].ladders
            if lad.name == opened.ladder
        )
        steps = [d for d in rows if d.step is not None]
        for d in rows:
            assert d.policy_version == opened.policy_version, (case_id, d)
            in_force = versions.at(d.at).version
            assert d.guards_version == (None if in_force == d.policy_version else in_force), d
        assert all(d.step is not None and d.step < len(ladder.steps) for d in steps)
        # Nothing twice: one send per step and channel.
        sent = Counter((d.step, d.channel) for d in rows if d.action == "sent")
        assert all(n == 1 for n in sent.values()), (case_id, sent)
        # Nothing skipped: a ladder that ran to its end went through every one of its steps.
        if any(d.action == "closed" and d.reason == "ladder_complete" for d in rows):
            assert {d.step for d in steps} == set(range(len(ladder.steps))), case_id


@PROPERTY
@given(policies(), policies(), CHANGE, stories())
def test_every_send_after_the_change_keeps_the_newer_sets_windows_and_caps(
    old: PolicySet, new: PolicySet, change: datetime, events: list[Event]
) -> None:
    decisions, _, sim = run(old, new, change, events)
    state = sim.states["C-1"]  # type: ignore[attr-defined]
    where = zones_of(state, new)
    sent = [d for d in decisions if d.action == "sent"]
    after = [d for d in sent if d.at >= change]
    for d in after:
        category = new.categories[d.extra["category"]]
        assert d.channel is not None
        if category.contact_windows == "enforce":
            window = new.contact_windows.get(d.channel) or new.contact_windows["default"]
            assert allowed(d.at, where, window, state.preferences.quiet_hours), d
    capped = [d for d in after if new.categories[d.extra["category"]].frequency_caps == "enforce"]
    assert_caps_hold(new, capped, sent, where)


OLD = """
version: 1
categories:
  collections: {kind: debt_collection, contact_windows: ignore, frequency_caps: exempt}
contact_windows:
  default: {start: "00:00", end: "23:59"}
escalations:
  collect:
    trigger: payment.missed
    category: collections
    stop_on: [payment.received]
    ladders:
      - name: standard
        steps:
          - {after: 0d, send: {channel: email, template: first}}
          - {after: 2d, send: {channel: email, template: second}}
          - {after: 4d, send: {channel: email, template: third}}
"""
# A step inserted before the second: by index, an open case would send "second" twice.
NEW = OLD.replace(
    "          - {after: 2d, send: {channel: email, template: second}}",
    "          - {after: 1d, send: {channel: email, template: inserted}}\n"
    "          - {after: 2d, send: {channel: email, template: second}}",
)


def test_an_inserted_step_neither_repeats_nor_skips_a_step_of_an_open_case() -> None:
    old = load_sources([PolicySource("old.yaml", OLD)])
    new = load_sources([PolicySource("new.yaml", NEW)])
    profile = {"emails": [{"address": "a@example.com"}], "time_zones": ["America/Chicago"]}
    events = [
        _event("customer.profile.updated", START, None, profile),
        _event("payment.missed", START + timedelta(hours=1), "A-1", MISSED),
        _event("payment.missed", START + timedelta(days=2, hours=1), "A-2", MISSED, 1),
    ]
    decisions, _, _ = run(old, new, START + timedelta(days=1, hours=12), events)

    sent = [(d.account_id, d.template, d.policy_version) for d in decisions if d.action == "sent"]
    assert sent == [
        ("A-1", "first", old.version),
        ("A-1", "second", old.version),  # after the change, still the old ladder
        ("A-2", "first", new.version),
        ("A-2", "inserted", new.version),
        ("A-1", "third", old.version),
        ("A-2", "second", new.version),
        ("A-2", "third", new.version),
    ]
    late = next(d for d in decisions if d.action == "sent" and d.template == "second")
    assert late.guards_version == new.version
    said = timeline.line(late, "America/Chicago")
    assert f"[ladder of {old.version}, guards of {new.version}]" in said


NAMED = """
version: 1
categories:
  collections: {kind: debt_collection, contact_windows: ignore, frequency_caps: exempt}
contact_windows:
  default: {start: "00:00", end: "23:59"}
escalations:
  collect:
    trigger: payment.missed
    category: collections
    on_policy_change: CHANGE
    ladders:
      - name: standard
        steps:
STEPS
"""


def named_set(change: str, steps: list[str]) -> PolicySet:
    text = NAMED.replace("CHANGE", change).replace(
        "STEPS", "\n".join(f"          - {step}" for step in steps)
    )
    return load_sources([PolicySource("named.yaml", text)])


OLD_STEPS = [
    "{name: first, after: 0d, send: {channel: email, template: first}}",
    "{name: second, after: 2d, send: {channel: email, template: second}}",
    "{name: third, after: 4d, send: {channel: email, template: third}}",
]
NEW_STEPS = [
    "{name: first, after: 0d, send: {channel: email, template: first}}",
    "{name: reminder, after: 1d, send: {channel: email, template: reminder}}",
    "{name: second, after: 3d, send: {channel: email, template: second-v2}}",
    "{name: third, after: 4d, send: {channel: email, template: third}}",
]


def test_restart_moves_an_open_case_to_the_new_ladder_by_step_name() -> None:
    old, new = named_set("keep", OLD_STEPS), named_set("restart", NEW_STEPS)
    decisions, _, _ = run(old, new, START + timedelta(hours=36), ONE_MISSED_PAYMENT)

    sent = [
        (d.template, (d.at - START).days, d.policy_version) for d in decisions if d.action == "sent"
    ]
    # "first" ran under the old ladder and is not run again; the new one goes on from
    # "reminder" (due already: it goes with the next timer), and "second" waited at day 2.
    assert sent == [
        ("first", 0, old.version),
        ("reminder", 2, new.version),
        ("second-v2", 3, new.version),
        ("third", 4, new.version),
    ]
    switched = next(d for d in decisions if d.action == "switched")
    assert switched.reason == "policy_change"
    assert switched.detail == f"to the standard ladder of {new.version}, from reminder"


def test_keep_leaves_an_open_case_on_its_own_ladder() -> None:
    old, new = named_set("keep", OLD_STEPS), named_set("keep", NEW_STEPS)
    decisions, _, _ = run(old, new, START + timedelta(hours=36), ONE_MISSED_PAYMENT)

    assert [d.template for d in decisions if d.action == "sent"] == ["first", "second", "third"]
    assert not [d for d in decisions if d.action == "switched"]


def test_a_step_name_is_unique_within_its_ladder() -> None:
    with pytest.raises(PolicyLoadError, match="step names must differ within a ladder: first"):
        named_set("keep", [OLD_STEPS[0], OLD_STEPS[0]])


@PROPERTY
@given(policies(), policies(), CHANGE, stories())
def test_a_case_that_moves_to_the_new_ladder_runs_no_step_twice(
    old: PolicySet, new: PolicySet, change: datetime, events: list[Event]
) -> None:
    """With `on_policy_change: restart`, a case moves at the change; a step known by the same
    name (here: position) in both ladders is never sent twice on one channel."""
    escalations = {
        name: esc.model_copy(update={"on_policy_change": "restart"})
        for name, esc in new.escalations.items()
    }
    moving = new.model_copy(update={"escalations": escalations, "version": "pol-moving"})
    decisions, _, _ = run(old, moving, change, events)
    for case_id, rows in by_case(decisions).items():
        sent = Counter((d.step, d.channel) for d in rows if d.action == "sent")
        assert all(n == 1 for n in sent.values()), (case_id, sent)
        moved = [d for d in rows if d.action == "switched" and d.reason == "policy_change"]
        assert len(moved) <= 1
        for d in rows:
            if moved and d.at > moved[0].at:
                assert d.policy_version == "pol-moving", d


def test_a_step_waiting_for_a_contact_starts_afresh_when_its_channels_changed() -> None:
    """Found by the property above: the waiting step's groups were the old step's, and the
    new step has other groups (an IndexError)."""
    old = named_set(
        "keep", ["{name: first, after: 0d, send: {channel: [sms, email], template: first}}"]
    )
    new = named_set(
        "restart", ["{name: first, after: 0d, send: {channel: email, template: first}}"]
    )
    events = [
        _event("customer.profile.updated", START, None, {}),  # no contact point yet
        _event("payment.missed", START, "A-1", MISSED),
        _event(
            "customer.profile.updated",
            START + timedelta(hours=2),
            None,
            {"emails": [{"address": "a@x.com"}]},
            1,
        ),
    ]
    decisions, _, _ = run(old, new, START + timedelta(hours=1), events)

    assert [(d.template, d.policy_version) for d in decisions if d.action == "sent"] == [
        ("first", new.version)
    ]


def test_a_partly_sent_step_whose_channels_changed_does_not_send_again_what_went() -> None:
    """Found by the property above in a full run: the old step went by email and waited
    for a phone number for its SMS; the new step sends by email only. Starting it afresh
    sent the email twice."""
    old = named_set(
        "keep", ["{name: first, after: 0d, send: {channel: [sms, email], template: first}}"]
    )
    new = named_set(
        "restart", ["{name: first, after: 0d, send: {channel: email, template: first}}"]
    )
    events = [
        _event("customer.profile.updated", START, None, {"emails": [{"address": "a@x.com"}]}),
        _event("payment.missed", START, "A-1", MISSED),
    ]
    decisions, _, _ = run(old, new, START + timedelta(hours=1), events)

    assert [(d.channel, d.policy_version) for d in decisions if d.action == "sent"] == [
        ("email", old.version)
    ]
    assert [d.reason for d in decisions if d.action in ("switched", "closed")] == [
        "policy_change",
        "ladder_complete",
    ]
