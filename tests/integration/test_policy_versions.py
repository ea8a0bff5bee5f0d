"""A policy change without a restart (issue 22, part 1), on a running worker.

`clarion policy publish` puts a set on the `policies` topic; the worker puts it
in force at the instant the publication names, on the clock it runs on (here
the event clock), so an input before that instant is decided under the old
set even when it is read after the publication. A rollback publishes the old
set again; a set the worker cannot load is refused and the one in force stays.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.sandbox import read_outbox
from schemas.decisions import Decision
from schemas.published import PublishedPolicy
from streams.cli.demo import (
    feed_and_settle,
    produce_lines,
    settings_env,
    start_worker,
    stop_worker,
)
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.runtime.settings import Settings
from streams.versions import catalog
from streams.versions.checks import check_set
from streams.versions.files import pack
from tests.conftest import POLICIES, STORIES, Broker, metrics, run_settings, wait_ready

pytestmark = pytest.mark.integration

POLICY = """
version: 1
categories:
  alerts: {kind: security, contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
contact_windows:
  default: {start: "00:00", end: "23:59"}
escalations:
  alert:
    trigger: fraud.suspected
    category: alerts
    ladders:
      - name: once
        steps:
          - {after: 0m, send: {channel: sms, template: alert}}
"""


def policy_dir(root: Path, words: str, more: str = "") -> Path:
    folder = root / words.split(":")[0]
    (folder / "templates" / "alert").mkdir(parents=True)
    (folder / "alerts.yaml").write_text(POLICY.replace("categories:\n", "categories:\n" + more))
    (folder / "templates" / "alert" / "sms.en.j2").write_text(words + " {{ data.reason }}")
    return folder


def event(event_id: str, kind: str, at: str, **data: Any) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "type": kind,
            "occurred_at": at,
            "customer_id": "C-1",
            "account_id": "A-1",
            "source": "test",
            "data": data,
        }
    )


PROFILE = event(
    "p-1",
    "customer.profile.updated",
    "2026-06-01T08:00:00Z",
    phones=[{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
)


def clarion(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "policy", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def openapi(settings: Settings) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.web_port}/api/v1/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as answer:
        document: dict[str, Any] = json.loads(answer.read())
    return document


def wait_for(settings: Settings, sample: str, timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scraped = metrics(settings.web_port)
        if scraped.get(sample) == 1:
            return scraped
        time.sleep(0.2)
    raise AssertionError(f"{sample} never showed in /metrics")


def sent_rows(settings: Settings, count: int, timeout: float = 60) -> list[Decision]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = asyncio.run(topics.read_all(settings.kafka_bootstrap, settings.topic("decisions")))
        sent = [Decision.model_validate_json(v) for _, v in rows]
        sent = [d for d in sent if d.action == "sent"]
        if len(sent) >= count:
            return sorted(sent, key=lambda d: d.at)
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} sent decisions after {timeout} s")


def test_a_published_set_takes_effect_at_its_instant_and_rolls_back(
    on_both: Broker, tmp_path: Path
) -> None:
    v1 = policy_dir(tmp_path, "First:")
    news = "  news: {kind: marketing, contact_windows: enforce, frequency_caps: enforce}\n"
    v2 = policy_dir(tmp_path, "Second:", news)
    settings = run_settings(
        on_both.bootstrap, tmp_path, "versions", policies_dir=v1, **on_both.settings
    )
    account_events = settings.topic(topics.ACCOUNT_EVENTS)

    def produce(*lines: str) -> None:
        asyncio.run(produce_lines(on_both.bootstrap, account_events, list(lines)))

    # A set that does not pass policy check is not published; with --strict, nor one
    # with a warning (here: a category that declares no kind).
    broken = policy_dir(tmp_path, "Broken:", "  oops: {contact_windows: sometimes}\n")
    refused = clarion(settings, "publish", str(broken))
    assert refused.returncode == 1 and "nothing published" in refused.stderr, refused.stderr
    warned = policy_dir(tmp_path, "Warned:", "  misc: {contact_windows: enforce}\n")
    strict = clarion(settings, "publish", str(warned), "--strict")
    assert strict.returncode == 1 and "warnings (--strict); nothing published" in strict.stderr

    published = clarion(
        settings, "publish", str(v2), "--at", "2026-06-02T00:00:00Z", "--author", "ana"
    )
    assert published.returncode == 0, published.stderr
    version2 = published.stdout.split()[1]
    version1 = check_set(v1, v1 / "templates").policy.version  # type: ignore[union-attr]
    assert "in force from 2026-06-02T00:00:00Z" in published.stdout

    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            wait_ready(settings, worker)
            scraped = metrics(settings.web_port)
            # The API names the categories of the set in force on the wall clock: the second.
            assert "news" in openapi(settings)["info"]["description"]
            assert scraped[f'clarion_policy_version{{version="{version2}",state="latest"}}'] == 1

            # Read after the publication, but before its instant: the first set decides.
            produce(
                PROFILE,
                event("f-1", "fraud.suspected", "2026-06-01T09:00:00Z", reason="one"),
                event("f-2", "fraud.suspected", "2026-06-02T09:00:00Z", reason="two"),
            )
            first = sent_rows(settings, 2)

            # A rollback, published while the worker runs: the follower adds it.
            rollback = clarion(
                settings, "publish", "--activate", version1, "--at", "2026-06-03T00:00:00Z"
            )
            assert rollback.returncode != 0  # version1 was never published: it is the dir's
            assert "no version" in rollback.stderr
            again = clarion(settings, "publish", str(v1), "--at", "2026-06-03T00:00:00Z")
            assert again.returncode == 0, again.stderr
            back = clarion(
                settings, "publish", "--activate", version2, "--at", "2026-06-04T00:00:00Z"
            )
            assert back.returncode == 0, back.stderr
            assert f"replacing {version1}" in back.stdout

            # A set this worker cannot load (its template does not render) is refused.
            words, files = pack(v2, v2 / "templates")
            files["alert/sms.en.j2"] = "Broken {{ data.reason"
            broken = PublishedPolicy(
                version="pol-000000000000",
                effective_at=datetime(2026, 6, 5, tzinfo=UTC),
                published_at=datetime.now(UTC),
                author="mallory",
                policies=words,
                templates=files,
            )
            asyncio.run(catalog.publish(settings, broken))
            wait_for(settings, 'clarion_policy_version{version="pol-000000000000",state="refused"}')
            wait_for(settings, f'clarion_policy_version{{version="{version2}",state="latest"}}')

            produce(
                event("f-3", "fraud.suspected", "2026-06-03T09:00:00Z", reason="three"),
                event("f-4", "fraud.suspected", "2026-06-04T09:00:00Z", reason="four"),
                event("f-5", "fraud.suspected", "2026-06-05T09:00:00Z", reason="five"),
            )
            rows = sent_rows(settings, 5)
        finally:
            stop_worker(worker)

        # A restart reads the whole topic before its first input: the same versions.
        worker = start_worker(settings, log)
        try:
            wait_ready(settings, worker)
            wait_for(settings, 'clarion_policy_version{version="pol-000000000000",state="refused"}')
            wait_for(settings, f'clarion_policy_version{{version="{version2}",state="latest"}}')
        finally:
            stop_worker(worker)

    assert [d.policy_version for d in first] == [version1, version2]
    assert [d.policy_version for d in rows] == [version1, version2, version1, version2, version2]
    # Each in the words of the version that chose it (dispatch may send a batch in any order).
    bodies = sorted(str(m["body"]) for m in read_outbox(settings.outbox_path))
    assert bodies == ["First: one", "First: three", "Second: five", "Second: four", "Second: two"]

    listed = clarion(settings, "versions")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 1 + 4
    assert "ana" in lines[1] and version2 in lines[1]
    assert version1 in lines[2] and "rollback" not in lines[2]
    assert f"(rollback of {version1})" in lines[3]
    assert "mallory" in lines[4]


def test_two_workers_across_a_change_and_a_rollback_decide_as_the_simulator(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The reference stories through two workers, with a changed ladder published from the
    hour before their missed payments and rolled back three days later: the decisions are
    `policy simulate --change`'s, and the cases open across the change keep their ladder."""
    v1 = tmp_path / "v1"
    shutil.copytree(POLICIES, v1)
    v2 = tmp_path / "v2"
    shutil.copytree(POLICIES, v2)
    collections = v2 / "10-collections.yaml"
    text = collections.read_text()
    old_step = (
        "          - {after: 3d, send: {channel: sms, template: payment-overdue, "
        "fallback: [email]}}"
    )
    assert old_step in text
    collections.write_text(
        text.replace(
            old_step,
            "          - {after: 2d, send: {channel: email, template: payment-overdue}}\n"
            + old_step.replace("after: 3d", "after: 5d"),
        )
    )
    changes = [("2000-01-01T00:00:00Z", v1), ("2026-11-20T12:00:00Z", v2)]
    settings = run_settings(broker.bootstrap, tmp_path, "pinned", policies_dir=v1)
    for at, folder in changes:
        done = clarion(settings, "publish", str(folder), "--at", at)
        assert done.returncode == 0, done.stderr
    first = check_set(v1, v1 / "templates").policy
    assert first is not None
    back = clarion(settings, "publish", "--activate", first.version, "--at", "2026-11-23T00:00:00Z")
    assert back.returncode == 0, back.stderr

    b_settings = settings.model_copy(update={"web_port": free_port()})
    with (tmp_path / "a.log").open("wb") as log_a, (tmp_path / "b.log").open("wb") as log_b:
        a, b = start_worker(settings, log_a), start_worker(b_settings, log_b)
        try:
            wait_ready(b_settings, b)
            wait_ready(settings, a)
            both = lambda: a.poll() is None and b.poll() is None  # noqa: E731
            decisions, _ = asyncio.run(feed_and_settle(settings, [STORIES], 90, both))
        finally:
            stop_worker(a)
            stop_worker(b)

    sim = clarion(
        settings,
        "simulate",
        "--policies",
        str(v1),
        "--events",
        str(STORIES),
        "--format",
        "jsonl",
        *(arg for at, folder in changes[1:] for arg in ("--change", f"{at}={folder}")),
        "--change",
        f"2026-11-23T00:00:00Z={v1}",
    )
    assert sim.returncode == 0, sim.stderr

    def key(row: dict[str, Any]) -> tuple[str, ...]:
        fields = ("at", "customer_id", "action", "channel", "template", "reason", "step")
        return (*(str(row.get(f)) for f in fields), str(row.get("policy_version")))

    compared = ("sent", "suppressed", "handoff", "stopped", "deferred", "paused", "resumed")
    simulated = sorted(
        k for k in (key(json.loads(line)) for line in sim.stdout.splitlines()) if k[2] in compared
    )
    pipeline = sorted(
        k for k in (key(d.model_dump(mode="json")) for d in decisions) if k[2] in compared
    )
    assert pipeline == simulated
    versions = {k[-1] for k in pipeline if k[2] == "sent"}
    second = check_set(v2, v2 / "templates").policy
    assert second is not None and versions == {first.version, second.version}
    # A case opened before the change ran its old ladder after it: a pinned decision.
    assert any(d.guards_version is not None for d in decisions)
