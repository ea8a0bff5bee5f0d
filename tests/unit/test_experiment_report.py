"""The experiment report against a ledger computed by hand (issue 22, part 4)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from policies.report import Row, experiment_report

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(day: float, customer: str, case: str | None, action: str, **more: str) -> Row:
    arm = more.get("arm")
    return Row(
        T0 + timedelta(days=day),
        customer,
        case,
        action,
        more.get("channel"),
        more.get("reason", ""),
        more.get("experiment", "x" if arm else None),
        arm,
    )


LEDGER = [
    # champion: C1 cured in 2 days after 2 messages and a call; C2 paid too late (day 40);
    # C3 got two emails and revoked a consent the next day.
    row(0, "C1", "k1", "opened", arm="champion"),
    row(0, "C1", "k1", "sent", arm="champion", channel="email"),
    row(1, "C1", "k1", "sent", arm="champion", channel="sms"),
    row(1.5, "C1", "k1", "sent", arm="champion", channel="voice"),
    row(2, "C1", "k1", "stopped", arm="champion", reason="payment.received"),
    row(0, "C2", "k2", "opened", arm="champion"),
    row(0, "C2", "k2", "sent", arm="champion", channel="email"),
    row(40, "C2", "k2", "stopped", arm="champion", reason="payment.received"),
    row(0, "C3", "k3", "opened", arm="champion"),
    row(0, "C3", "k3", "sent", arm="champion", channel="email"),
    row(3, "C3", "k3", "sent", arm="champion", channel="email"),
    row(1, "C3", None, "consent", reason="revoked", channel="sms"),
    # gentle: C4 agreed a plan on day 1; C5 ran to the end unpaid.
    row(0, "C4", "k4", "opened", arm="gentle"),
    row(0, "C4", "k4", "sent", arm="gentle", channel="email"),
    row(1, "C4", "k4", "stopped", arm="gentle", reason="payment_plan.agreed"),
    row(0, "C5", "k5", "opened", arm="gentle"),
    row(0, "C5", "k5", "sent", arm="gentle", channel="email"),
    row(9, "C5", "k5", "closed", arm="gentle", reason="ladder_complete"),
    # Not counted: another experiment, and a case opened before the window.
    row(0, "C6", "k6", "opened", arm="champion", experiment="y"),
    row(-1, "C7", "k7", "opened", arm="champion"),
]


def test_the_figures_are_those_computed_by_hand() -> None:
    report = experiment_report(LEDGER, "x", since=T0, cure_days=30)

    champion, gentle = report.arms
    assert (champion.arm, champion.customers, champion.cases) == ("champion", 3, 3)
    assert champion.messages_per_case == pytest.approx(5 / 3)
    assert champion.calls_per_case == pytest.approx(1 / 3)
    assert champion.cure_rate == pytest.approx(1 / 3)  # C2's payment came after 30 days
    assert champion.opt_out_rate == pytest.approx(1 / 3)
    assert (gentle.arm, gentle.customers, gentle.cases) == ("gentle", 2, 2)
    assert (gentle.messages_per_case, gentle.calls_per_case) == (1.0, 0.0)
    assert (gentle.cure_rate, gentle.opt_out_rate) == (0.5, 0.0)

    by_metric = {d.metric: d for d in report.differences}
    messages = by_metric["messages_per_case"]
    # Welch: champion's sample variance of (2, 1, 2) is 1/3, gentle's (1, 1) is 0.
    se = math.sqrt(0 / 2 + (1 / 3) / 3)
    assert messages.value == pytest.approx(-2 / 3)
    assert (messages.low, messages.high) == pytest.approx(
        (-2 / 3 - 1.96 * se, -2 / 3 + 1.96 * se), abs=1e-3
    )
    assert messages.significant
    cure = by_metric["cure_rate"]
    se = math.sqrt(0.5 * 0.5 / 2 + (1 / 3) * (2 / 3) / 3)
    assert cure.value == pytest.approx(1 / 6)
    assert (cure.low, cure.high) == pytest.approx((1 / 6 - 1.96 * se, 1 / 6 + 1.96 * se), abs=1e-3)
    assert not cure.significant


def test_a_window_and_a_shorter_cure_count_less() -> None:
    report = experiment_report(LEDGER, "x", since=T0, until=T0 + timedelta(hours=1), cure_days=1)
    champion = report.arms[0]
    assert champion.cases == 3
    assert champion.cured == 0  # C1 paid on day 2
    assert experiment_report(LEDGER, "nothing", since=T0).arms == []
