"""The ten reference stories through `clarion policy simulate`: every outcome their README lists."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from streams.cli import policy as policy_cli
from tests.conftest import POLICIES, STORIES

Row = dict[str, Any]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    out, err = io.StringIO(), io.StringIO()
    code = policy_cli.simulate_command(POLICIES, STORIES, None, "jsonl", None, out, err)
    assert (code, err.getvalue()) == (0, "")
    return [json.loads(line) for line in out.getvalue().splitlines()]


def of(rows: list[Row], customer: str, *actions: str) -> list[Row]:
    return [r for r in rows if r["customer_id"] == customer and r["action"] in actions]


def sends(rows: list[Row], customer: str) -> list[tuple[str, str, str]]:
    return [(r["at"], r["channel"], r["template"]) for r in of(rows, customer, "sent")]


def test_every_row_has_the_documented_fields(rows: list[Row]) -> None:
    fields = {"at", "customer_id", "account_id", "case_id", "escalation", "ladder", "step"}
    fields |= {"action", "channel", "template", "reason", "until", "policy_version"}
    for row in rows:
        assert fields <= row.keys()
        assert row["at"].endswith("Z") and row["policy_version"].startswith("pol-")
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_c1001_sms_and_validation_at_once_sms_day_3_paid_day_5_no_call(rows: list[Row]) -> None:
    assert sends(rows, "C-1001") == [
        ("2026-11-20T14:00:00Z", "sms", "payment-missed"),
        ("2026-11-20T14:00:00Z", "email", "validation-notice"),
        ("2026-11-23T14:00:00Z", "sms", "payment-overdue"),
    ]
    stopped = of(rows, "C-1001", "stopped")
    assert [(r["at"], r["reason"]) for r in stopped] == [
        ("2026-11-25T16:30:00Z", "payment.received")
    ]
    assert not [r for r in rows if r["customer_id"] == "C-1001" and r["channel"] == "voice"]


def test_c1002_priority_ladder_call_on_day_1_inside_new_york_hours_handoff_day_3(
    rows: list[Row],
) -> None:
    opened = of(rows, "C-1002", "opened")
    assert {r["ladder"] for r in opened if r["escalation"] == "missed-payment"} == {"priority"}
    calls = [s for s in sends(rows, "C-1002") if s[1] == "voice"]
    assert calls == [("2026-11-21T14:00:00Z", "voice", "collections-call")]  # 09:00 in New York
    handoffs = of(rows, "C-1002", "handoff")
    assert [(r["at"], r["reason"]) for r in handoffs] == [("2026-11-23T14:00:00Z", "agent")]


def test_c1003_calls_only_inside_every_fallback_zone_then_hardship_on_day_4(
    rows: list[Row],
) -> None:
    calls = [s for s in sends(rows, "C-1003") if s[1] == "voice"]
    # 16:00Z is 08:00 in Los Angeles, the last of the fallback zones to open.
    assert calls[0] == ("2026-11-20T16:00:00Z", "voice", "payment-missed")
    assert not [s for s in sends(rows, "C-1003") if s[1] == "sms"]  # a landline
    for at, channel, _ in sends(rows, "C-1003"):
        hour = int(at[11:13])
        assert hour >= 16 or hour < 1, (at, channel)  # 08:00 LA to 21:00 New York
    switched = of(rows, "C-1003", "switched")
    assert [(r["at"], r["ladder"]) for r in switched] == [("2026-11-24T10:00:00Z", "hardship")]
    later = [s for s in sends(rows, "C-1003") if s[0] > "2026-11-24"]
    assert [t for _, _, t in later] == ["hardship-options", "hardship-check-in"]


def test_c1004_fraud_sms_at_once_confirmed_so_no_call(rows: list[Row]) -> None:
    assert sends(rows, "C-1004") == [("2026-11-21T10:05:00Z", "sms", "confirm-transaction")]
    assert [r["reason"] for r in of(rows, "C-1004", "stopped")] == ["transaction.confirmed"]


def test_c1005_new_and_previous_address_are_told(rows: list[Row]) -> None:
    told = of(rows, "C-1005", "sent")
    assert {(r["template"], r["channel"]) for r in told} == {("contact-changed", "email")}
    assert {r["recipient"] for r in told} == {"e***@example.com"}  # masked: two rows
    assert len({r["notification_id"] for r in told}) == 2


def test_c1006_no_preference_means_email_and_nothing_after_cease(rows: list[Row]) -> None:
    first = sends(rows, "C-1006")[0]
    assert first == ("2026-11-20T14:00:00Z", "email", "payment-missed")
    stop = of(rows, "C-1006", "stopped")[0]
    assert (stop["at"], stop["reason"]) == ("2026-11-22T09:00:00Z", "cease.requested")
    assert not [s for s in sends(rows, "C-1006") if s[0] >= stop["at"]]


def test_c1007_stop_before_the_deferred_sms_so_email_instead_and_never_sms(
    rows: list[Row],
) -> None:
    deferred = of(rows, "C-1007", "deferred")[0]
    assert (deferred["channel"], deferred["until"]) == ("sms", "2026-11-20T15:00:00Z")
    assert not [s for s in sends(rows, "C-1007") if s[1] == "sms"]
    first = of(rows, "C-1007", "sent")[0]
    assert (first["at"], first["channel"], first["template"], first["reason"]) == (
        "2026-11-20T15:00:00Z",
        "email",
        "payment-missed",
        "fallback",
    )


def test_c1008_terms_by_email_only(rows: list[Row]) -> None:
    assert sends(rows, "C-1008") == [("2026-11-20T09:00:00Z", "email", "terms-changed")]


def test_c1009_offer_suppressed_for_want_of_an_opt_in(rows: list[Row]) -> None:
    assert sends(rows, "C-1009") == []
    assert [r["reason"] for r in of(rows, "C-1009", "suppressed")] == ["opt_in_required"]


def test_c1010_dispute_pauses_eight_days_so_the_day_3_sms_moves_to_december_1(
    rows: list[Row],
) -> None:
    assert [r["at"] for r in of(rows, "C-1010", "paused", "resumed")] == [
        "2026-11-21T11:00:00Z",
        "2026-11-29T11:00:00Z",
    ]
    sms = [s for s in sends(rows, "C-1010") if s[2] == "payment-overdue"]
    assert sms == [("2026-12-01T14:00:00Z", "sms", "payment-overdue")]
    paused = [s for s in sends(rows, "C-1010") if "2026-11-21T11" <= s[0] < "2026-11-29T11"]
    assert paused == []


def test_the_table_shows_local_time_beside_utc(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert policy_cli.simulate_command(POLICIES, STORIES, None, "table", None, out, err) == 0
    text = out.getvalue()
    assert "C-1007  (America/Denver)" in text
    assert "2026-11-20 15:00Z  Fri 08:00 MST" in text


def test_until_stops_the_clock(rows: list[Row]) -> None:
    from datetime import UTC, datetime

    out, err = io.StringIO(), io.StringIO()
    until = datetime(2026, 11, 22, tzinfo=UTC)
    assert policy_cli.simulate_command(POLICIES, STORIES, until, "jsonl", None, out, err) == 0
    early = [json.loads(line) for line in out.getvalue().splitlines()]
    assert early and all(r["at"] <= "2026-11-22T00:00:00Z" for r in early)
    assert early == [r for r in rows if r["at"] <= "2026-11-22T00:00:00Z"]


def test_invalid_lines_are_reported_and_the_run_goes_on(tmp_path: Any) -> None:
    lines = STORIES.read_text().splitlines()
    bad = tmp_path / "events.jsonl"
    bad.write_text("\n".join([lines[0], "{not json", lines[1], '{"type": "payment.mised"}']))
    out, err = io.StringIO(), io.StringIO()
    assert policy_cli.simulate_command(POLICIES, bad, None, "jsonl", None, out, err) == 2
    reported = err.getvalue().splitlines()
    assert reported[0].startswith(f"{bad}:2: not valid JSON")
    assert reported[1].startswith(f"{bad}:4: ") and "payment.missed" in reported[1]
