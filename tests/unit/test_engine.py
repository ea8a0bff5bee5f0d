"""The engine, one behaviour and one reason code at a time, on small policies written here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies.engine import Outcome, Tick, decide
from policies.loader import PolicySource, load_sources
from policies.model import PolicySet
from policies.simulator import Simulator
from policies.state import CustomerState
from schemas.decisions import Decision
from schemas.events import Event, event_from_dict
from schemas.notifications import DeliveryReceipt
from tests import samples

GUARDS = """
version: 1
default_locale: en
time_zone_fallback: [America/New_York, America/Los_Angeles]
categories:
  collections: {contact_windows: enforce, frequency_caps: enforce, honours_cease: true}
  service:     {contact_windows: enforce, frequency_caps: enforce, honours_cease: false}
  notices:
    {contact_windows: ignore, frequency_caps: exempt, honours_cease: false, required: true}
  marketing:   {contact_windows: enforce, frequency_caps: enforce, consent: opt_in}
contact_windows:
  default: {start: "08:00", end: "21:00"}
  voice:   {days: [mon, tue, wed, thu, fri], start: "09:00", end: "20:00"}
frequency_caps:
  - {channel: sms, max: 2, per: 1d, scope: customer}
  - {channel: voice, max: 7, per: 7d, scope: account}
  - {channel: voice, after_conversation: 7d, scope: account}
"""

# Friday 2026-11-20 15:00Z is 09:00 in Chicago: inside every window.
FRI_0900_CHI = datetime(2026, 11, 20, 15, tzinfo=UTC)


def policy_of(escalations: str, guards: str = GUARDS) -> PolicySet:
    return load_sources([PolicySource("00.yaml", guards), PolicySource("10.yaml", escalations)])


def event(type_: str, at: datetime, account: str | None = "A-1", **data: Any) -> Event:
    raw = samples.event(type_, occurred_at=at.isoformat(), account_id=account)
    raw["data"].update(data)
    raw["event_id"] = f"evt-{type_}-{at.isoformat()}"
    return event_from_dict(raw)


def customer(policy: PolicySet, **profile: Any) -> CustomerState:
    data = {**samples.DATA["customer.profile.updated"], **profile}
    e = event("customer.profile.updated", FRI_0900_CHI - timedelta(days=30), None, **data)
    return decide(CustomerState(customer_id="C-1"), e, e.occurred_at, policy).state


def prefer(policy: PolicySet, state: CustomerState, **prefs: Any) -> CustomerState:
    raw = samples.event("customer.preferences.updated", data=prefs)
    e = event_from_dict(raw)
    return decide(state, e, e.occurred_at, policy).state


def rows(outcome: Outcome) -> list[tuple[str, str]]:
    return [(d.action, d.reason) for d in outcome.decisions]


def answered_call(notification_id: str, at: datetime, status: str = "completed") -> DeliveryReceipt:
    """A person picked up: the receipt that makes a call a conversation."""
    return DeliveryReceipt(
        notification_id=notification_id,
        customer_id="C-1",
        channel="voice",
        provider="twilio",
        status=status,
        answered_by="human",
        at=at,
    )


def run(policy: PolicySet, state: CustomerState, *events: Event, until: datetime) -> list[Decision]:
    sim = Simulator(policy)
    sim.states[state.customer_id] = state
    if state.due is not None:
        sim._timers.append((state.due, state.customer_id))
    found: list[Decision] = []
    for e in events:
        found += sim.apply(e)
    return found + sim.advance(until)


ONE_SMS = """
version: 1
escalations:
  nudge:
    trigger: payment.missed
    category: collections
    stop_on: [payment.received]
    ladders:
      - name: only
        steps:
          - {after: 0h, send: {channel: sms, template: t, fallback: [email]}}
"""


def test_sent_at_once_then_closed() -> None:
    policy = policy_of(ONE_SMS)
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert rows(out) == [
        ("opened", "payment.missed"),
        ("sent", "step_due"),
        ("closed", "ladder_complete"),
    ]
    sent = out.decisions[1]
    assert (sent.channel, sent.recipient, sent.template) == ("sms", "+13125550101", "t")
    assert [n.notification_id for n in out.notifications] == [sent.notification_id]
    assert out.state.cases == {} and out.state.due is None


def test_fallback_when_the_channel_cannot_reach_the_customer() -> None:
    policy = policy_of(ONE_SMS)
    state = customer(policy, phones=[{"number": "+15055550103", "type": "landline"}])
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    sent = out.decisions[1]
    assert (sent.action, sent.reason, sent.channel) == ("sent", "fallback", "email")
    assert sent.detail and "landline" in sent.detail


@pytest.mark.parametrize(
    ("profile", "prefs", "reason"),
    [
        (
            {
                "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": False}],
                "emails": [{"address": "w@example.com", "type": "work"}],
            },
            {},
            "no_consent",
        ),
        ({}, {"channels": {"sms": False, "email": False}}, "opted_out"),
    ],
)
def test_suppressed_when_no_channel_is_left(
    profile: dict[str, Any], prefs: dict[str, Any], reason: str
) -> None:
    policy = policy_of(ONE_SMS)
    state = prefer(policy, customer(policy, **profile), **prefs)
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert ("suppressed", reason) in rows(out) and out.notifications == []


WAITING_NOTICE = """
version: 1
escalations:
  validation:
    trigger: payment.missed
    category: notices
    contact_wait: 2d
    ladders:
      - name: only
        steps:
          - {after: 0h, send: {channel: email, template: t, fallback: [sms]}}
"""


def test_a_step_with_no_contact_point_is_held_and_sent_when_a_profile_arrives() -> None:
    """Issue 19: an event read before the customer's profile is not lost. The step waits
    (`deferred / awaiting_contact`), and the profile's arrival sends it at once."""
    policy = policy_of(ONE_SMS)
    nobody = CustomerState(customer_id="C-1")
    missed = event("payment.missed", FRI_0900_CHI)
    held = decide(nobody, missed, FRI_0900_CHI, policy)
    assert rows(held) == [("opened", "payment.missed"), ("deferred", "awaiting_contact")]
    assert held.decisions[1].until == FRI_0900_CHI + timedelta(days=1)  # the set's default
    assert held.notifications == [] and held.state.due == FRI_0900_CHI + timedelta(days=1)
    later = FRI_0900_CHI + timedelta(minutes=3)
    profile = event(
        "customer.profile.updated", later, None, **samples.DATA["customer.profile.updated"]
    )
    out = decide(held.state, profile, later, policy)
    assert rows(out) == [("sent", "step_due"), ("closed", "ladder_complete")]
    assert out.decisions[0].at == later and out.decisions[0].channel == "sms"
    assert [n.notification_id for n in out.notifications] == [out.decisions[0].notification_id]


def test_a_profile_without_the_needed_contact_point_keeps_the_original_bound() -> None:
    policy = policy_of(ONE_SMS)
    missed = event("payment.missed", FRI_0900_CHI)
    held = decide(CustomerState(customer_id="C-1"), missed, FRI_0900_CHI, policy)
    later = FRI_0900_CHI + timedelta(hours=5)
    empty = event("customer.profile.updated", later, None, phones=[], emails=[])
    out = decide(held.state, empty, later, policy)
    assert rows(out) == [("deferred", "awaiting_contact")]
    assert out.decisions[0].until == FRI_0900_CHI + timedelta(days=1), "the wait did not restart"
    expired = decide(out.state, Tick("C-1"), FRI_0900_CHI + timedelta(days=1), policy)
    assert rows(expired) == [("suppressed", "no_contact_point"), ("closed", "ladder_complete")]
    assert "none came within 1d" in (expired.decisions[0].detail or "")


def test_a_required_notice_with_no_contact_point_becomes_a_letter_when_the_wait_runs_out() -> None:
    policy = policy_of(WAITING_NOTICE)
    missed = event("payment.missed", FRI_0900_CHI)
    held = decide(CustomerState(customer_id="C-1"), missed, FRI_0900_CHI, policy)
    assert rows(held) == [("opened", "payment.missed"), ("deferred", "awaiting_contact")]
    assert held.decisions[1].until == FRI_0900_CHI + timedelta(days=2)  # the escalation's own
    early = decide(held.state, Tick("C-1"), FRI_0900_CHI + timedelta(days=1), policy)
    assert rows(early) == []
    out = decide(held.state, Tick("C-1"), FRI_0900_CHI + timedelta(days=2), policy)
    assert rows(out) == [("handoff", "letter"), ("closed", "ladder_complete")]
    assert out.notifications == []


def test_an_opt_out_is_an_answer_not_a_wait() -> None:
    policy = policy_of(ONE_SMS)
    state = prefer(policy, customer(policy, emails=[]), channels={"sms": False})
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert ("deferred", "awaiting_contact") not in rows(out)
    assert ("suppressed", "opted_out") in rows(out)


def test_a_category_opt_out_suppresses_and_marketing_needs_an_opt_in() -> None:
    policy = policy_of(ONE_SMS + OFFER)
    state = prefer(policy, customer(policy), categories={"collections": False})
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert ("suppressed", "opted_out") in rows(out)
    out = decide(state, event("offer.available", FRI_0900_CHI, None), FRI_0900_CHI, policy)
    assert ("suppressed", "opt_in_required") in rows(out)
    opted = prefer(policy, state, categories={"marketing": True})
    out = decide(opted, event("offer.available", FRI_0900_CHI, None), FRI_0900_CHI, policy)
    assert ("sent", "step_due") in rows(out)


OFFER = """
  offer:
    trigger: offer.available
    category: marketing
    case: customer
    ladders:
      - name: offer
        steps:
          - {after: 0h, send: {channel: email, template: offer}}
"""


def test_deferred_to_the_window_then_sent_by_the_timer() -> None:
    policy = policy_of(ONE_SMS)
    night = datetime(2026, 11, 20, 11, tzinfo=UTC)  # 05:00 in Chicago
    out = decide(customer(policy), event("payment.missed", night), night, policy)
    deferred = out.decisions[1]
    assert (deferred.action, deferred.reason) == ("deferred", "contact_window")
    assert deferred.until == datetime(2026, 11, 20, 14, tzinfo=UTC)  # 08:00 in Chicago
    assert out.state.due == deferred.until
    early = decide(out.state, Tick("C-1"), deferred.until - timedelta(seconds=1), policy)
    assert early.decisions == []
    fired = decide(out.state, Tick("C-1"), deferred.until, policy)
    assert rows(fired) == [("sent", "step_due"), ("closed", "ladder_complete")]


def test_skip_when_a_guard_blocks_and_the_step_says_skip() -> None:
    policy = policy_of(
        ONE_SMS.replace("fallback: [email]}}", "fallback: [email]}, on_blocked: skip}")
    )
    night = datetime(2026, 11, 20, 11, tzinfo=UTC)
    out = decide(customer(policy), event("payment.missed", night), night, policy)
    assert ("suppressed", "contact_window") in rows(out) and out.state.cases == {}


def test_on_blocked_fallback_uses_a_channel_whose_guards_allow() -> None:
    calls = ONE_SMS.replace(
        "{channel: sms, template: t, fallback: [email]}}",
        "{channel: voice, template: t, fallback: [email]}, on_blocked: fallback}",
    )
    policy = policy_of(calls)
    saturday = datetime(2026, 11, 21, 15, tzinfo=UTC)  # no calls on Saturday; email is fine
    out = decide(customer(policy), event("payment.missed", saturday), saturday, policy)
    sent = [d for d in out.decisions if d.action == "sent"]
    assert [(d.channel, d.reason) for d in sent] == [("email", "fallback")]


def test_frequency_cap_defers_until_the_oldest_contact_leaves_the_window() -> None:
    rolling = GUARDS.replace(
        "{channel: sms, max: 2, per: 1d, scope: customer}",
        "{channel: sms, max: 2, per: 1d, scope: customer, counting: rolling}",
    )
    escalation = ONE_SMS.replace("stop_on: [payment.received]", "on_retrigger: restart")
    policy = policy_of(escalation, rolling)
    state = customer(policy)
    times = [FRI_0900_CHI, FRI_0900_CHI + timedelta(hours=1), FRI_0900_CHI + timedelta(hours=2)]
    outs = []
    for at in times:
        out = decide(state, event("payment.missed", at), at, policy)
        state, outs = out.state, [*outs, out]
    third = [d for d in outs[2].decisions if d.action == "deferred"]
    assert [(d.reason, d.until) for d in third] == [("frequency_cap", times[0] + timedelta(days=1))]
    counted = [d for o in outs for d in o.decisions if d.action == "sent"]
    assert len(counted) == 2
    # Counted in calendar days (the default), it goes when the customer's next day has
    # begun and the window opens: 08:00 in Chicago, an hour before the rolling day ends.
    calendar = policy_of(escalation)
    state = customer(calendar)
    for at in times:
        out = decide(state, event("payment.missed", at), at, calendar)
        state = out.state
    [deferred] = [d for d in out.decisions if d.action == "deferred"]
    assert deferred.until == datetime(2026, 11, 21, 14, tzinfo=UTC)
    assert "per 1d (1 calendar days)" in (deferred.detail or "")


TWO_CALLS = """
version: 1
escalations:
  call:
    trigger: payment.missed
    category: collections
    ladders:
      - name: calls
        steps:
          - {after: 0h, send: {channel: voice, template: call}}
          - {after: 3d, send: {channel: voice, template: call}}
"""


@pytest.mark.parametrize("counting", ["calendar_days", "rolling"])
def test_after_a_conversation_no_call_for_seven_days(counting: str) -> None:
    """Reg F 1006.14(b)(2)(ii): the conversation's date is day 1; day 8 may have a call.

    Counted in calendar days (the default) the next call goes at the first minute the
    window allows on day 8 (Friday 09:00 in Chicago); rolling, 168 hours after it."""
    guards = GUARDS.replace(
        "{channel: voice, after_conversation: 7d, scope: account}",
        f"{{channel: voice, after_conversation: 7d, scope: account, counting: {counting}}}",
    )
    policy = policy_of(TWO_CALLS, guards)
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    talked_at = FRI_0900_CHI + timedelta(minutes=5)
    answered = answered_call(out.notifications[0].notification_id, talked_at)
    state = decide(out.state, answered, talked_at, policy).state
    next_day = decide(state, Tick("C-1"), FRI_0900_CHI + timedelta(days=3), policy)
    deferred = [d for d in next_day.decisions if d.action == "deferred"]
    day_8 = datetime(2026, 11, 27, 15, tzinfo=UTC)
    expected = day_8 if counting == "calendar_days" else talked_at + timedelta(days=7)
    assert [(d.reason, d.until) for d in deferred] == [("frequency_cap", expected)]


def test_cease_suppresses_honouring_categories_only() -> None:
    policy = policy_of(ONE_SMS + NOTICE)
    state = customer(policy)
    ceased = decide(state, event("cease.requested", FRI_0900_CHI, None), FRI_0900_CHI, policy).state
    out = decide(ceased, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert rows(out) == [("suppressed", "cease")]
    out = decide(ceased, event("policy.changed", FRI_0900_CHI, None), FRI_0900_CHI, policy)
    assert ("sent", "step_due") in rows(out)


NOTICE = """
  terms:
    trigger: policy.changed
    category: notices
    case: customer
    ladders:
      - name: notice
        steps:
          - {after: 0h, send: {channel: email, template: terms, fallback: [sms]}}
"""


def test_a_required_notice_with_no_channel_left_becomes_a_letter() -> None:
    policy = policy_of(ONE_SMS + NOTICE)
    state = prefer(
        policy,
        customer(policy, phones=[], emails=[]),
        categories={"notices": False},
    )
    out = decide(state, event("policy.changed", FRI_0900_CHI, None), FRI_0900_CHI, policy)
    assert ("deferred", "awaiting_contact") in rows(out)  # a profile may yet come (issue 19)
    out = decide(out.state, Tick("C-1"), FRI_0900_CHI + timedelta(days=1), policy)
    assert ("handoff", "letter") in rows(out)


LADDER = """
version: 1
escalations:
  collect:
    trigger: payment.missed
    category: collections
    stop_on: [payment.received]
    pause_on: {dispute.opened: dispute.resolved}
    switch_on: {hardship.reported: hardship}
    ladders:
      - name: standard
        steps:
          - {after: 0h, send: {channel: email, template: first}}
          - after: 2d
            send: {channel: email, template: second}
            unless_received: [payment_plan.agreed]
          - after: 3bd
            send: {channel: email, template: third}
            when: {data.amount_due: {gte: 100}}
          - {after: 10d, handoff: agent}
      - name: hardship
        steps:
          - {after: 1d, send: {channel: email, template: help}}
"""


def test_stop_ends_the_case_and_nothing_follows() -> None:
    policy = policy_of(LADDER)
    decisions = run(
        policy,
        customer(policy),
        event("payment.missed", FRI_0900_CHI),
        event("payment.received", FRI_0900_CHI + timedelta(days=1)),
        until=FRI_0900_CHI + timedelta(days=30),
    )
    assert [(d.action, d.template or d.reason) for d in decisions] == [
        ("opened", "payment.missed"),
        ("sent", "first"),
        ("stopped", "payment.received"),
    ]


def test_business_days_skip_the_weekend_and_when_and_unless_received_skip_steps() -> None:
    policy = policy_of(LADDER)
    decisions = run(
        policy,
        customer(policy),
        event("payment.missed", FRI_0900_CHI, amount_due="50.00"),
        event("payment_plan.agreed", FRI_0900_CHI + timedelta(hours=1)),
        until=FRI_0900_CHI + timedelta(days=30),
    )
    got = [(d.at, d.action, d.reason, d.step) for d in decisions if d.step is not None]
    wednesday = datetime(2026, 11, 25, 15, tzinfo=UTC)  # 3 business days after Friday 09:00
    assert got == [
        (FRI_0900_CHI, "sent", "step_due", 0),
        (FRI_0900_CHI + timedelta(days=2), "suppressed", "already_received", 1),
        (wednesday, "suppressed", "step_condition", 2),
        (FRI_0900_CHI + timedelta(days=10), "handoff", "agent", 3),
    ]


def test_a_pause_freezes_the_clock_and_resume_moves_every_step_later() -> None:
    policy = policy_of(LADDER)
    decisions = run(
        policy,
        customer(policy),
        event("payment.missed", FRI_0900_CHI),
        event("dispute.opened", FRI_0900_CHI + timedelta(days=1)),
        event("dispute.resolved", FRI_0900_CHI + timedelta(days=6)),
        until=FRI_0900_CHI + timedelta(days=30),
    )
    second = next(d for d in decisions if d.template == "second")
    assert second.at == FRI_0900_CHI + timedelta(days=2 + 5)
    assert [d.action for d in decisions if d.action in ("paused", "resumed")] == [
        "paused",
        "resumed",
    ]
    assert not [
        d
        for d in decisions
        if d.action == "sent"
        and FRI_0900_CHI + timedelta(days=1) <= d.at < FRI_0900_CHI + timedelta(days=6)
    ]


def test_switch_moves_the_case_to_the_named_ladder_counting_from_the_switch() -> None:
    policy = policy_of(LADDER)
    switch_at = FRI_0900_CHI + timedelta(days=1)
    decisions = run(
        policy,
        customer(policy),
        event("payment.missed", FRI_0900_CHI),
        event("hardship.reported", switch_at),
        until=FRI_0900_CHI + timedelta(days=30),
    )
    after = [(d.action, d.template, d.at) for d in decisions if d.at >= switch_at]
    assert after == [
        ("switched", None, switch_at),
        ("sent", "help", switch_at + timedelta(days=1)),
        ("closed", None, switch_at + timedelta(days=1)),
    ]


def test_retrigger_keep_records_the_open_case_and_restart_replaces_it() -> None:
    policy = policy_of(LADDER)
    state = decide(
        customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy
    ).state
    again = event("payment.missed", FRI_0900_CHI + timedelta(hours=1))
    out = decide(state, again, again.occurred_at, policy)
    assert rows(out) == [("suppressed", "case_open")]
    assert out.state.cases.keys() == state.cases.keys()
    restart = policy_of(LADDER.replace("stop_on:", "on_retrigger: restart\n    stop_on:"))
    state = decide(
        customer(restart), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, restart
    ).state
    out = decide(state, again, again.occurred_at, restart)
    assert rows(out)[:3] == [
        ("closed", "restarted"),
        ("opened", "payment.missed"),
        ("sent", "step_due"),
    ]


def test_no_ladder_whose_when_holds() -> None:
    big_only = ONE_SMS.replace(
        "      - name: only\n", "      - name: only\n        when: {data.amount_due: {gte: 1000}}\n"
    )
    policy = policy_of(big_only)
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    assert rows(out) == [("suppressed", "no_ladder")]


def test_a_permanent_failure_moves_the_step_to_its_fallback_and_delivery_is_recorded() -> None:
    policy = policy_of(
        ONE_SMS.replace(
            "template: t, fallback: [email]}}",
            "template: t, fallback: [email]}}\n          - {after: 1d, handoff: agent}",
        )
    )
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    sms = out.notifications[0]
    failed = DeliveryReceipt(
        notification_id=sms.notification_id,
        customer_id="C-1",
        channel="sms",
        provider="twilio",
        status="undelivered",
        at=FRI_0900_CHI + timedelta(minutes=1),
    )
    then = decide(out.state, failed, failed.at, policy)
    assert [(n.channel, n.template) for n in then.notifications] == [("email", "t")]
    email = then.notifications[0]
    delivered = failed.model_copy(
        update={"notification_id": email.notification_id, "channel": "email", "status": "delivered"}
    )
    done = decide(then.state, delivered, delivered.at, policy)
    assert rows(done) == [("delivered", "delivered")]


def test_a_stop_on_record_revokes_sms_for_that_number_and_later_steps_fall_back() -> None:
    policy = policy_of(
        ONE_SMS.replace(
            "template: t, fallback: [email]}}",
            "template: t, fallback: [email]}}\n"
            "          - {after: 1d, send: {channel: sms, template: t, fallback: [email]}}",
        )
    )
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    sms = out.notifications[0]
    refused = DeliveryReceipt(
        notification_id=sms.notification_id,
        customer_id="C-1",
        channel="sms",
        provider="twilio",
        status="failed",
        at=FRI_0900_CHI + timedelta(minutes=1),
        error_code="21610",
        reason="recipient_opted_out",
        effect="opted_out",
        recipient=sms.recipient,
    )
    then = decide(out.state, refused, refused.at, policy)
    assert [(d.action, d.reason, d.channel) for d in then.decisions] == [
        ("sent", "fallback", "email")
    ]
    assert then.decisions[0].detail == "sms failed for this step"
    consent = then.state.consents[f"sms:{sms.recipient}"]
    assert (consent.status, consent.source) == ("revoked", "twilio:recipient_opted_out")
    next_day = decide(then.state, Tick("C-1"), FRI_0900_CHI + timedelta(days=1), policy)
    sent = [(d.action, d.channel) for d in next_day.decisions if d.action == "sent"]
    assert sent == [("sent", "email")]  # the number that said STOP gets no more SMS


def test_now_must_be_aware() -> None:
    policy = policy_of(ONE_SMS)
    with pytest.raises(ValueError, match="aware"):
        decide(
            customer(policy), event("payment.missed", FRI_0900_CHI), datetime(2026, 11, 20), policy
        )


def test_notification_ids_are_deterministic() -> None:
    policy = policy_of(ONE_SMS)
    state = customer(policy)
    missed = event("payment.missed", FRI_0900_CHI)
    first = decide(state, missed, FRI_0900_CHI, policy).notifications
    second = decide(state, missed, FRI_0900_CHI, policy).notifications
    assert [n.notification_id for n in first] == [n.notification_id for n in second]


def test_sends_fired_at_one_instant_count_toward_the_caps_of_the_next() -> None:
    three = ONE_SMS.replace(
        "          - {after: 0h, send: {channel: sms, template: t, fallback: [email]}}",
        "\n".join(["          - {after: 0h, send: {channel: sms, template: t}}"] * 3),
    )
    policy = policy_of(three)
    night = datetime(2026, 11, 20, 11, tzinfo=UTC)  # all three deferred to 08:00 Chicago
    out = decide(customer(policy), event("payment.missed", night), night, policy)
    fired = decide(out.state, Tick("C-1"), datetime(2026, 11, 20, 14, tzinfo=UTC), policy)
    assert [(d.action, d.reason) for d in fired.decisions] == [
        ("sent", "step_due"),
        ("sent", "step_due"),
        ("deferred", "frequency_cap"),
    ]


TWO_SMS = ONE_SMS.replace(
    "template: t, fallback: [email]}}",
    "template: t, fallback: [email]}}\n"
    "          - {after: 1d, send: {channel: sms, template: t, fallback: [email]}}",
)


def test_a_reply_is_recorded_on_its_case_and_handed_to_an_agent_where_the_policy_says() -> None:
    for on_reply, expected in [
        ("record", [("replied", "customer_reply")]),
        ("agent", [("replied", "customer_reply"), ("handoff", "customer_reply")]),
    ]:
        text = TWO_SMS.replace("    ladders:", f"    on_reply: {on_reply}\n    ladders:")
        policy = policy_of(text)
        out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
        case_id = out.notifications[0].case_id
        at = FRI_0900_CHI + timedelta(minutes=3)
        reply = event(
            "reply.received", at, channel="sms", text="Can I pay Friday?", case_id=case_id
        )
        then = decide(out.state, reply, at, policy)
        assert rows(then) == expected
        assert {d.case_id for d in then.decisions} == {case_id}
        assert then.decisions[0].detail == "Can I pay Friday?"
        assert then.state.cases.keys() == out.state.cases.keys()  # the ladder goes on


def test_a_reply_with_no_open_case_is_still_on_the_ledger() -> None:
    policy = policy_of(ONE_SMS)
    reply = event("reply.received", FRI_0900_CHI, channel="sms", text="hi", case_id=None)
    out = decide(customer(policy), reply, FRI_0900_CHI, policy)
    assert rows(out) == [("replied", "customer_reply_no_open_case")]


def test_an_answered_call_reported_by_detection_is_a_conversation() -> None:
    policy = policy_of(TWO_CALLS)
    out = decide(customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    talked_at = FRI_0900_CHI + timedelta(minutes=1)
    answered = answered_call(out.notifications[0].notification_id, talked_at, "answered")
    then = decide(out.state, answered, talked_at, policy)
    assert rows(then) == [("delivered", "answered")]
    assert [c.at for c in then.state.conversations] == [talked_at]


def test_a_channel_turned_off_for_one_category_only_falls_back_there() -> None:
    policy = policy_of(ONE_SMS + OFFER)
    state = prefer(
        policy,
        customer(policy),
        category_channels={"collections": {"sms": False}},
        categories={"marketing": True},
    )
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy)
    sent = [d for d in out.decisions if d.action == "sent"]
    assert [(d.reason, d.channel) for d in sent] == [("fallback", "email")]
    assert sent[0].detail == "the customer turned sms off for collections"


def test_a_case_whose_escalation_was_removed_is_closed_not_an_error() -> None:
    """A deploy dropped an escalation with cases open: each such case is closed on the
    ledger at the customer's next input, and the input itself goes on as usual."""
    before = policy_of(LADDER)
    opened = decide(customer(before), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, before)
    assert opened.state.cases
    after = policy_of(
        ONE_SMS.replace("nudge:", "other:").replace("payment.missed", "payment.due_soon")
    )
    later = FRI_0900_CHI + timedelta(hours=1)
    out = decide(opened.state, event("payment.received", later), later, after)
    assert rows(out)[0] == ("closed", "escalation_removed")
    assert out.state.cases == {}
    assert "have no collect" in (out.decisions[0].detail or "")
