"""The `clarion` command as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POLICIES, ROOT

pytestmark = pytest.mark.e2e


def clarion(
    *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`clarion ARGS`; with `env`, in that environment alone (and a PATH), as a fresh shell."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {"PATH": "/usr/bin:/bin", **env},
    )


def test_demo_runs_to_the_end_and_prints_a_timeline(tmp_path: Path) -> None:
    result = clarion("demo", "--workdir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for customer in [f"C-10{n:02d}" for n in range(1, 11)]:
        assert customer in out
    assert "sent       sms   payment-missed  -> +*********01" in out
    assert "suppressed offer  (opt_in_required" in out
    assert "stopped    missed-payment  (payment.received)" in out
    assert "did you mean 'payment.missed'?" in out
    assert "dead-letters (4)" in out
    assert "ana@example.com" not in out  # contact points are masked
    assert (tmp_path / "demo" / "outbox.jsonl").read_text().count("\n") >= 12


def test_policy_check_accepts_the_reference_set() -> None:
    result = clarion("policy", "check", str(POLICIES))
    assert result.returncode == 0, result.stderr
    assert "10 escalations" in result.stdout


def test_policy_check_reports_file_line_column(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    path = tmp_path / "p" / "20-fraud.yaml"
    path.write_text(path.read_text().replace("on_retrigger: restart", "on_retriger: restart"))
    result = clarion("policy", "check", str(tmp_path / "p"))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "20-fraud.yaml:7:5: escalations.large-transaction.on_retriger: unknown key"
    )


def test_worker_names_a_bad_setting() -> None:
    result = clarion("worker", timeout=60, env={"CLARION_PARTITIONS": "zero"})
    assert result.returncode == 2
    assert "CLARION_PARTITIONS" in result.stderr


def test_worker_names_a_half_made_broker_connection() -> None:
    env = {
        "CLARION_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CLARION_KAFKA_SASL_PASSWORD": "hunter2-is-not-shown",
        "CLARION_KAFKA_SSL_CERTFILE": "/etc/clarion/client.pem",
    }
    result = clarion("worker", timeout=60, env=env)
    assert result.returncode == 2
    for said in (
        "CLARION_KAFKA_SASL_USERNAME is required with SASL_PLAINTEXT",
        "CLARION_KAFKA_SSL_CERTFILE is set but SASL_PLAINTEXT uses no TLS",
        "CLARION_KAFKA_SSL_CERTFILE and CLARION_KAFKA_SSL_KEYFILE go together",
    ):
        assert said in result.stderr
    assert "hunter2" not in result.stderr


def test_ledger_says_when_the_broker_cannot_be_reached() -> None:
    from streams.kafka.broker import free_port

    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = clarion("ledger", "C-1001", timeout=60, env={"CLARION_KAFKA_BOOTSTRAP": bootstrap})
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"clarion ledger: cannot reach the broker at {bootstrap} over PLAINTEXT")
    )


def test_worker_names_a_bad_role() -> None:
    for argv, says in (
        (["--role", "both"], "invalid choice: 'both'"),
        ([], "CLARION_ROLE"),  # the variable, as any setting
    ):
        result = clarion("worker", *argv, timeout=60, env={"CLARION_ROLE": "both"})
        assert result.returncode == 2 and says in result.stderr, result.stderr


def test_policy_check_strict_fails_on_a_compliance_warning(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    path = tmp_path / "p" / "00-guards.yaml"
    path.write_text(
        path.read_text().replace(
            "collections: {kind: debt_collection, contact_windows: enforce",
            "collections: {kind: debt_collection, contact_windows: ignore",
        )
    )
    lenient = clarion("policy", "check", str(tmp_path / "p"))
    assert lenient.returncode == 0 and "1 warnings" in lenient.stdout
    assert "ignores contact windows" in lenient.stderr
    strict = clarion("policy", "check", "--strict", str(tmp_path / "p"))
    assert strict.returncode == 1


def test_policy_check_finds_templates_beside_or_given(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "templates" / "final-notice")
    missing = clarion("policy", "check", str(tmp_path / "p"))
    assert missing.returncode == 1
    assert "unknown template 'final-notice' for email" in missing.stderr
    given = clarion(
        "policy", "check", str(tmp_path / "p"), "--templates", str(POLICIES / "templates")
    )
    assert given.returncode == 0, given.stderr


def test_policy_simulate_prints_jsonl_and_exits_2_on_a_bad_line(tmp_path: Path) -> None:
    from tests.conftest import STORIES

    events = tmp_path / "events.jsonl"
    events.write_text(STORIES.read_text() + '{"event_id": "x"}\n')
    result = clarion(
        "policy",
        "simulate",
        "--policies",
        str(POLICIES),
        "--events",
        str(events),
        "--format",
        "jsonl",
        "--until",
        "2026-12-02T00:00:00Z",
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{events}:34: ")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {
        "at": "2026-12-01T14:00:00Z",
        "customer_id": "C-1010",
        "action": "sent",
    }.items() <= rows[-1].items()


def test_policy_simulate_drops_a_retry_as_intake_does(tmp_path: Path) -> None:
    """A repeated event id for a customer is a producer's retry: named on stderr, not replayed."""
    from tests.conftest import STORIES

    lines = STORIES.read_text().splitlines(keepends=True)
    retried = next(n for n, line in enumerate(lines) if '"payment.missed"' in line)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(lines) + lines[retried])
    args = ("policy", "simulate", "--policies", str(POLICIES), "--format", "jsonl")
    alone = clarion(*args, "--events", str(STORIES))
    result = clarion(*args, "--events", str(events))
    assert result.returncode == 0, result.stderr
    event_id = json.loads(lines[retried])["event_id"]
    assert result.stderr == (
        f"{events}:{len(lines) + 1}: duplicate event_id {event_id!r} "
        f"(first on line {retried + 1}): dropped, as intake drops a retry\n"
    )
    assert result.stdout == alone.stdout


def test_policy_diff_names_the_rule_and_the_decisions_it_moves(tmp_path: Path) -> None:
    from tests.conftest import STORIES

    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    collections = new / "10-collections.yaml"
    step = "- {after: 3d, send: {channel: sms, template: payment-overdue"
    collections.write_text(collections.read_text().replace(step, step.replace("3d", "5d"), 1))
    result = clarion("policy", "diff", str(POLICIES), str(new), "--events", str(STORIES))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rules: 1 change\n" in out
    assert "  escalations.missed-payment.ladders.standard.steps.1.after: 3d -> 5d\n" in out
    assert "decisions for" in out and "first at 2026-11-23 14:00Z" in out
    ana = out[out.index("  C-1001") :].splitlines()[1:3]
    assert ana[0].startswith("    - 2026-11-23 14:00Z") and "payment-overdue" in ana[0]
    assert ana[1].startswith("    + 2026-11-25 14:00Z") and "payment-overdue" in ana[1]
    assert "+13125550101" not in out  # recipients are masked, as in the timeline
    assert "templates: 0 changes\n" in out
    # The cases open after the last event keep their ladder (on_policy_change: keep).
    assert "(the last event), were the new set in force then: 3 keep their ladder, 0 move\n" in out
    assert "  C-1007  missed-payment/A-1007-CARD/evt-0030  standard, 2 steps left: keeps it" in out

    # With on_policy_change: restart they move, from the first step they have not run.
    moving = tmp_path / "moving"
    shutil.copytree(new, moving)
    text = (moving / "10-collections.yaml").read_text()
    restart = "    on_retrigger: keep\n    on_policy_change: restart\n"
    (moving / "10-collections.yaml").write_text(text.replace("    on_retrigger: keep\n", restart))
    moved = clarion("policy", "diff", str(POLICIES), str(moving), "--events", str(STORIES))
    assert "then: 0 keep their ladder, 3 move\n" in moved.stdout, moved.stdout
    assert (
        "  C-1007  missed-payment/A-1007-CARD/evt-0030  standard, 2 steps left: moves to the "
        "standard ladder of pol-" in moved.stdout
    )

    # An event line that cannot be read is named, and the report still comes (exit 2).
    events = tmp_path / "events.jsonl"
    events.write_text(STORIES.read_text() + '{"event_id": "x"}\n')
    with_bad = clarion("policy", "diff", str(POLICIES), str(new), "--events", str(events))
    assert with_bad.returncode == 2
    assert with_bad.stderr.startswith(f"{events}:34: ")
    assert with_bad.stdout == out.replace(str(STORIES), str(events))

    # A message's words are part of the set: another version, and the lines that differ.
    sms = new / "templates" / "payment-missed" / "sms.en.j2"
    sms.write_text(sms.read_text().replace("Pay or call us", "Pay now or call us"))
    words = clarion("policy", "diff", str(POLICIES), str(new)).stdout
    versions = words.splitlines()[0]
    assert versions.split()[2] != versions.split()[5], versions
    assert "templates: 1 change\n  --- old/templates/payment-missed/sms.en.j2\n" in words
    assert "  +Your payment" in words and "Pay now or call us" in words

    # A set that does not load is named, and nothing is compared.
    collections.write_text(collections.read_text().replace("stop_on:", "stop_onn:", 1))
    broken = clarion("policy", "diff", str(POLICIES), str(new))
    assert broken.returncode == 1
    assert "10-collections.yaml:" in broken.stderr and "stop_onn" in broken.stderr
    assert broken.stderr.strip().endswith(f"{new}: does not load; nothing compared")


def test_two_drivers_one_answer(tmp_path: Path) -> None:
    """The running pipeline (demo: real broker, real agents, virtual clock) decides exactly
    what `policy simulate` predicts for the same events and policies."""
    from tests.conftest import MALFORMED, STORIES

    stories = STORIES.read_text().splitlines(keepends=True)
    retry = tmp_path / "retry.jsonl"  # a producer's retry: one of the stories' lines again
    retry.write_text(next(line for line in stories if '"payment.missed"' in line))
    files = [STORIES, MALFORMED, retry]
    feed = [arg for path in files for arg in ("--events", str(path))]
    demo = clarion("demo", *feed, "--workdir", str(tmp_path / "demo"), "--format", "jsonl")
    assert demo.returncode == 0, demo.stderr
    both = tmp_path / "all.jsonl"
    both.write_text("".join(path.read_text() for path in files))
    sim = clarion(
        "policy",
        "simulate",
        "--policies",
        str(POLICIES),
        "--events",
        str(both),
        "--format",
        "jsonl",
    )
    assert sim.returncode == 2  # the malformed lines are reported, as the demo dead-letters them

    def key(line: str) -> tuple[str, ...]:
        row = json.loads(line)
        fields = ("at", "customer_id", "action", "channel", "template", "reason")
        return tuple(str(row[f]) for f in fields)

    compared = ("sent", "suppressed", "handoff", "stopped", "deferred", "paused", "resumed")
    pipeline = sorted(k for k in map(key, demo.stdout.splitlines()) if k[2] in compared)
    simulated = sorted(k for k in map(key, sim.stdout.splitlines()) if k[2] in compared)
    assert pipeline == simulated
    assert len([k for k in pipeline if k[2] == "sent"]) == 27
    last = len(both.read_text().splitlines())
    assert f"{both}:{last}: duplicate event_id" in sim.stderr  # dropped, as intake drops it


def test_policy_simulate_replays_what_came_back_in(tmp_path: Path) -> None:
    """Receipts and replies, exported from their topics, replay beside the events."""
    from schemas.notifications import notification_id
    from tests import samples

    profile = samples.event("customer.profile.updated", account_id=None)
    profile.update(event_id="r-0", customer_id="C-R", occurred_at="2026-11-20T15:00:00Z")
    large = samples.event("transaction.large", account_id="A-1")
    large.update(event_id="r-1", customer_id="C-R", occurred_at="2026-11-20T15:00:01Z")
    number = profile["data"]["phones"][0]["number"]
    case = "large-transaction/A-1/r-1"
    sms = notification_id("C-R", case, 0, "sms", number)
    receipt = {
        "notification_id": sms,
        "customer_id": "C-R",
        "channel": "sms",
        "provider": "twilio",
        "receipt_id": "SM1:undelivered:",
        "status": "undelivered",
        "at": "2026-11-20T15:01:00Z",
        "error_code": "30006",
        "reason": "landline_or_unreachable",
        "effect": "unusable",
        "recipient": number,
    }
    reply = samples.event("reply.received", account_id="A-1")
    reply.update(event_id="r-2", customer_id="C-R", occurred_at="2026-11-20T15:02:00Z")
    reply["data"]["case_id"] = case
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (profile, large, receipt, reply)) + "\n")

    result = clarion(
        "policy", "simulate", "--policies", str(POLICIES), "--events", str(path),
        "--format", "jsonl", "--until", "2026-11-20T15:05:00Z",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    seen = [(r["at"], r["action"], r["reason"], r["channel"]) for r in rows]
    assert seen == [
        ("2026-11-20T15:00:01Z", "opened", "transaction.large", None),
        ("2026-11-20T15:00:01Z", "sent", "step_due", "sms"),
        ("2026-11-20T15:01:00Z", "failed", "landline_or_unreachable", "sms"),
        ("2026-11-20T15:01:00Z", "sent", "fallback", "email"),
        ("2026-11-20T15:02:00Z", "replied", "customer_reply", "sms"),
    ]
