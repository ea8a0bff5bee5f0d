"""Champion/challenger (issue 22, part 4): who is in which arm, and what each arm runs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from policies.experiments import assign
from policies.loader import PolicyLoadError, PolicySource, load_sources
from policies.model import Arm, Experiment, PolicySet
from policies.simulator import simulate
from schemas.events import event_from_dict

T0 = datetime(2026, 11, 2, 15, tzinfo=UTC)

SET = """
version: 1
categories:
  collections: {kind: debt_collection, contact_windows: ignore, frequency_caps: exempt}
  validation:
    {kind: debt_collection, required: true, contact_windows: ignore, frequency_caps: exempt}
contact_windows:
  default: {start: "00:00", end: "23:59"}
escalations:
  collect:
    trigger: payment.missed
    category: CATEGORY
    stop_on: [payment.received]
    experiment:
      name: gentle-q4
      arms:
        - {name: champion, weight: 50}
        - {name: gentle, weight: 30, ladder: gentle}
      holdout: 20
    ladders:
      - name: standard
        steps:
          - {after: 0d, send: {channel: email, template: firm}}
          - {after: 2d, handoff: agent}
      - name: gentle
        steps:
          - {after: 0d, send: {channel: email, template: kind}}
"""


def experiment_set(category: str = "collections", text: str = SET) -> PolicySet:
    return load_sources([PolicySource("set.yaml", text.replace("CATEGORY", category))])


def test_assignment_follows_the_weights_within_one_percent_over_100000_customers() -> None:
    experiment = Experiment(
        name="gentle-q4",
        arms=[Arm(name="champion", weight=50), Arm(name="gentle", weight=30, ladder="gentle")],
        holdout=20,
    )
    counts = Counter(assign(experiment, f"C-{n}") for n in range(100_000))

    for arm, weight in (("champion", 0.5), ("gentle", 0.3), ("holdout", 0.2)):
        assert abs(counts[arm] / 100_000 - weight) < 0.01, counts
    # The same customer, the same arm: any worker, any restart, any case.
    assert all(assign(experiment, f"C-{n}") == assign(experiment, f"C-{n}") for n in range(1000))
    # Another experiment splits the same customers afresh.
    other = experiment.model_copy(update={"name": "other"})
    same = sum(assign(experiment, f"C-{n}") == assign(other, f"C-{n}") for n in range(10_000))
    assert same < 5_000


def customer_in(arm: str, policy: PolicySet) -> str:
    experiment = policy.escalations["collect"].experiment
    assert experiment is not None
    return next(f"C-{n}" for n in range(1000) if assign(experiment, f"C-{n}") == arm)


def events_for(customer: str) -> list:  # type: ignore[type-arg]
    return [
        event_from_dict(
            {
                "event_id": f"{customer}-p",
                "type": "customer.profile.updated",
                "occurred_at": T0.isoformat(),
                "customer_id": customer,
                "source": "test",
                "data": {"emails": [{"address": "a@example.com"}]},
            }
        ),
        event_from_dict(
            {
                "event_id": f"{customer}-m",
                "type": "payment.missed",
                "occurred_at": (T0 + timedelta(minutes=1)).isoformat(),
                "customer_id": customer,
                "account_id": "A-1",
                "source": "test",
                "data": {
                    "amount_due": "10.00",
                    "currency": "USD",
                    "due_date": "2026-10-01",
                    "days_past_due": 3,
                },
            }
        ),
    ]


@pytest.mark.parametrize(
    ("arm", "sent", "suppressed"),
    [
        ("champion", ["firm"], []),
        ("gentle", ["kind"], []),
        ("holdout", [], ["holdout", "holdout"]),
    ],
)
def test_each_arm_runs_its_ladder_and_the_holdout_sends_nothing(
    arm: str, sent: list[str], suppressed: list[str]
) -> None:
    policy = experiment_set()
    decisions, _ = simulate(events_for(customer_in(arm, policy)), policy)
    rows = [d for d in decisions if d.case_id is not None]

    assert {(d.experiment, d.arm) for d in rows} == {("gentle-q4", arm)}
    assert [d.template for d in rows if d.action == "sent"] == sent
    assert [d.reason for d in rows if d.action == "suppressed"] == suppressed
    handoffs = [d for d in rows if d.action == "handoff"]
    assert len(handoffs) == (1 if arm == "champion" else 0)


def test_an_experiment_is_checked_where_it_is_written() -> None:
    with pytest.raises(PolicyLoadError, match=r"arms\.1\.ladder: no ladder named 'soft'"):
        experiment_set(text=SET.replace("ladder: gentle}", "ladder: soft}"))
    with pytest.raises(PolicyLoadError, match="'validation' is a required category"):
        experiment_set("validation")
    with pytest.raises(PolicyLoadError, match="arm names must differ"):
        experiment_set(text=SET.replace("name: gentle, weight", "name: champion, weight"))
    twice = SET + SET.split("escalations:\n")[1].replace("  collect:", "  collect-again:")
    with pytest.raises(PolicyLoadError, match="is collect's experiment already"):
        experiment_set(text=twice)


GENTLE_LADDER = """      - name: gentle
        steps:
          - {after: 0d, send: {channel: email, template: kind}}
"""
ALTERNATIVE = (
    SET.replace(
        "        - {name: gentle, weight: 30, ladder: gentle}",
        "        - {name: gentle, weight: 30, escalation: collect-kindly}",
    ).replace(GENTLE_LADDER, "")
    + """  collect-kindly:
    trigger: payment.missed
    category: collections
    stop_on: [payment.received]
    ladders:
      - name: kindly
        steps:
          - {after: 0d, send: {channel: email, template: kind}}
          - {after: 1d, send: {channel: email, template: kinder}}
"""
)


def test_an_arm_may_run_another_escalation_whole_and_it_opens_nothing_of_its_own() -> None:
    policy = experiment_set(text=ALTERNATIVE)
    for arm, escalation, sent in (
        ("gentle", "collect-kindly", ["kind", "kinder"]),
        ("champion", "collect", ["firm"]),
    ):
        decisions, _ = simulate(events_for(customer_in(arm, policy)), policy)
        rows = [d for d in decisions if d.case_id is not None]
        assert {(d.escalation, d.experiment, d.arm) for d in rows} == {
            (escalation, "gentle-q4", arm)
        }
        assert [d.template for d in rows if d.action == "sent"] == sent


def test_an_arms_escalation_is_checked() -> None:
    with pytest.raises(PolicyLoadError, match="no other escalation named 'collect-kind'"):
        experiment_set(
            text=ALTERNATIVE.replace("escalation: collect-kindly", "escalation: collect-kind")
        )
    other_trigger = ALTERNATIVE.replace(
        "  collect-kindly:\n    trigger: payment.missed",
        "  collect-kindly:\n    trigger: balance.overdue",
    )
    with pytest.raises(PolicyLoadError, match=r"opens on balance\.overdue, not payment\.missed"):
        experiment_set(text=other_trigger)
