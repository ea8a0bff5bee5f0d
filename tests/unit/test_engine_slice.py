"""The foundation slice of the engine, run over the reference stories."""

from __future__ import annotations

from collections import defaultdict

import pytest

from policies.engine import Outcome, decide
from policies.model import PolicySet
from policies.state import CustomerState
from schemas.events import event_from_dict, parse_event
from tests import samples
from tests.conftest import STORIES


@pytest.fixture(scope="module")
def run(policy: PolicySet) -> dict[str, list[Outcome]]:
    states: dict[str, CustomerState] = {}
    outcomes: dict[str, list[Outcome]] = defaultdict(list)
    for line in STORIES.read_text().splitlines():
        event = parse_event(line)
        state = states.get(event.customer_id, CustomerState(customer_id=event.customer_id))
        outcome = decide(state, event, event.occurred_at, policy)
        states[event.customer_id] = outcome.state
        outcomes[event.customer_id].append(outcome)
    return outcomes


def sends(outcomes: list[Outcome]) -> list[tuple[str, str, str, str]]:
    return [
        (n.channel, n.recipient, n.template, n.locale) for o in outcomes for n in o.notifications
    ]


def actions(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(d.action, d.reason) for o in outcomes for d in o.decisions]


def test_c1001_preferred_sms_in_spanish_and_the_validation_email(
    run: dict[str, list[Outcome]],
) -> None:
    assert sends(run["C-1001"]) == [
        ("sms", "+13125550101", "payment-missed", "es"),
        ("email", "ana@example.com", "validation-notice", "es"),
    ]
    assert actions(run["C-1001"])[-1] == ("stopped", "payment.received")


def test_c1002_large_balance_takes_the_priority_ladder(run: dict[str, list[Outcome]]) -> None:
    opened = [d for o in run["C-1002"] for d in o.decisions if d.action == "opened"]
    assert [d.ladder for d in opened] == ["priority"]


def test_c1005_old_and_new_address_are_both_told(run: dict[str, list[Outcome]]) -> None:
    recipients = {r for _, r, t, _ in sends(run["C-1005"]) if t == "contact-changed"}
    assert recipients == {"eve.new@example.com", "eve.old@example.com"}


def test_c1006_without_preference_falls_back_to_email(run: dict[str, list[Outcome]]) -> None:
    assert sends(run["C-1006"])[0][:3] == ("email", "finn@example.com", "payment-missed")
    assert ("stopped", "cease.requested") in actions(run["C-1006"])


def test_c1008_terms_by_email(run: dict[str, list[Outcome]]) -> None:
    assert sends(run["C-1008"]) == [("email", "hal@example.com", "terms-changed", "en")]


def test_c1009_offer_without_opt_in_is_suppressed_with_the_reason(
    run: dict[str, list[Outcome]],
) -> None:
    assert sends(run["C-1009"]) == []
    assert ("suppressed", "opt_in_required") in actions(run["C-1009"])


def test_c1004_confirmation_stops_the_verification(run: dict[str, list[Outcome]]) -> None:
    assert sends(run["C-1004"])[0][:3] == ("sms", "+14155550104", "confirm-transaction")
    assert actions(run["C-1004"])[-1] == ("stopped", "transaction.confirmed")


def test_every_decision_carries_the_policy_version(
    run: dict[str, list[Outcome]], policy: PolicySet
) -> None:
    for outcomes in run.values():
        for o in outcomes:
            assert all(d.policy_version == policy.version for d in o.decisions)
            assert all(n.policy_version == policy.version for n in o.notifications)


def test_notification_ids_are_deterministic(policy: PolicySet) -> None:
    state = CustomerState(customer_id="C-1")
    profile = event_from_dict(samples.event("customer.profile.updated"))
    missed = event_from_dict(samples.event("payment.missed"))
    state = decide(state, profile, profile.occurred_at, policy).state
    first = decide(state, missed, missed.occurred_at, policy).notifications
    second = decide(state, missed, missed.occurred_at, policy).notifications
    assert [n.notification_id for n in first] == [n.notification_id for n in second]
    assert len({n.notification_id for n in first}) == len(first) == 2


def test_a_revoked_sms_consent_is_honoured(policy: PolicySet) -> None:
    state = CustomerState(customer_id="C-1")
    for type_name in ("customer.profile.updated", "consent.changed"):
        e = event_from_dict(samples.event(type_name))
        state = decide(state, e, e.occurred_at, policy).state
    prefs = event_from_dict(
        samples.event("customer.preferences.updated", data={"preferred_channel": "sms"})
    )
    state = decide(state, prefs, prefs.occurred_at, policy).state
    missed = event_from_dict(samples.event("payment.missed"))
    channels = [n.channel for n in decide(state, missed, missed.occurred_at, policy).notifications]
    assert "sms" not in channels and channels[0] == "email"


def test_sms_never_goes_to_a_landline(policy: PolicySet) -> None:
    profile = {
        "phones": [{"number": "+15055550103", "type": "landline", "sms_consent": True}],
        "emails": [],
        "time_zones": [],
    }
    state = CustomerState(customer_id="C-1")
    e = event_from_dict(samples.event("customer.profile.updated", data=profile))
    state = decide(state, e, e.occurred_at, policy).state
    fraud = event_from_dict(samples.event("transaction.large"))
    outcome = decide(state, fraud, fraud.occurred_at, policy)
    assert outcome.notifications == []
    blocked = [d for d in outcome.decisions if d.action == "suppressed"]
    assert blocked[0].reason == "no_contact_point"


def test_keep_on_retrigger_opens_no_second_case(policy: PolicySet) -> None:
    state = CustomerState(customer_id="C-1")
    e = event_from_dict(samples.event("customer.profile.updated"))
    state = decide(state, e, e.occurred_at, policy).state
    missed = event_from_dict(samples.event("payment.missed"))
    state = decide(state, missed, missed.occurred_at, policy).state
    again = event_from_dict(samples.event("payment.missed", event_id="evt-2"))
    outcome = decide(state, again, again.occurred_at, policy)
    assert outcome.notifications == [] and outcome.decisions == []
    assert len(outcome.state.cases) == 1


def test_now_must_be_aware(policy: PolicySet) -> None:
    from datetime import datetime

    e = event_from_dict(samples.event("payment.missed"))
    with pytest.raises(ValueError, match="aware"):
        decide(CustomerState(customer_id="C-1"), e, datetime(2026, 11, 20), policy)


def test_c1003_and_c1007_are_deferred_to_their_windows(run: dict[str, list[Outcome]]) -> None:
    from datetime import UTC, datetime

    def deferred(customer: str) -> set[tuple[str | None, datetime | None]]:
        return {
            (d.channel, d.until)
            for o in run[customer]
            for d in o.decisions
            if d.action == "deferred"
        }

    # No zone known: 08:00 in every fallback zone is 08:00 Los Angeles = 16:00Z.
    assert deferred("C-1003") == {
        ("voice", datetime(2026, 11, 20, 16, tzinfo=UTC)),
        ("email", datetime(2026, 11, 20, 16, tzinfo=UTC)),
    }
    # 14:00Z is 07:00 in Denver: the SMS waits for 08:00 MST.
    assert ("sms", datetime(2026, 11, 20, 15, tzinfo=UTC)) in deferred("C-1007")
    assert sends(run["C-1003"]) == [] and sends(run["C-1007"]) == []


def test_fraud_ignores_contact_windows(run: dict[str, list[Outcome]]) -> None:
    # C-1004's transaction is at 02:05 Los Angeles time, and the SMS goes at once.
    assert sends(run["C-1004"])[0][0] == "sms"
