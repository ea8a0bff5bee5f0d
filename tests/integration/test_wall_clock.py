"""The production clock: a step one minute out fires on the wall clock, on time.

Workers in `wall` mode advance their timers with clock messages of their own
(every `tick_interval_s`). This waits out a real minute, so it is the slowest
test; it is the only one that runs the ticker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.decisions import Decision
from streams.cli.demo import demo_settings, produce_lines, start_worker, stop_worker
from streams.kafka import topics
from tests.conftest import Broker, metrics

pytestmark = pytest.mark.integration

POLICY = """
version: 1
categories:
  alerts: {contact_windows: ignore, frequency_caps: exempt, honours_cease: false}
contact_windows:
  default: {start: "00:00", end: "23:59"}
escalations:
  alert:
    trigger: fraud.suspected
    category: alerts
    ladders:
      - name: twice
        steps:
          - {after: 0m, send: {channel: sms, template: alert}}
          - {after: 1m, send: {channel: sms, template: alert}}
"""


# Tansu only: the broker plays no part in the timing, and each run waits a real minute.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_a_step_one_minute_out_fires_on_time_on_the_wall_clock(
    on_both: Broker, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    (policies / "templates" / "alert").mkdir(parents=True)
    (policies / "alerts.yaml").write_text(POLICY)
    (policies / "templates" / "alert" / "sms.en.j2").write_text("Fraud alert: {{ data.reason }}")
    run = uuid.uuid4().hex[:8]
    settings = demo_settings(
        on_both.bootstrap,
        tmp_path,
        app_id=f"clarion-wall-{run}",
        topic_prefix=f"wall{run}.",
        clock="wall",
        policies_dir=policies,
        log_format="json",
        **on_both.settings,
    )
    asyncio.run(topics.ensure_topics(settings))
    profile = {
        "event_id": "p-1",
        "type": "customer.profile.updated",
        "occurred_at": datetime.now(UTC).isoformat(),
        "customer_id": "C-1",
        "source": "test",
        "data": {"phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}]},
    }
    fraud = {
        **profile,
        "event_id": "f-1",
        "type": "fraud.suspected",
        "account_id": "A-1",
        "data": {"reason": "card used in two countries"},
    }
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            lines = [json.dumps(profile), json.dumps(fraud)]
            asyncio.run(
                produce_lines(on_both.bootstrap, settings.topic(topics.ACCOUNT_EVENTS), lines)
            )
            sent = wait_for_sent(settings.topic(topics.DECISIONS), on_both.bootstrap, 2, 120)
            scraped = metrics(settings.web_port)
        finally:
            stop_worker(worker)
    assert [d.step for d in sent] == [0, 1]
    due = sent[0].at + timedelta(minutes=1)
    lateness = (sent[1].at - due).total_seconds()
    print(f"wall-clock step lateness: {lateness:.3f} s")
    # The tick interval (0.25 s) plus Faust's fetch wait: its consumer asks for up to
    # 1.5 s (fixed in faust's aiokafka driver), and Tansu does not answer a waiting
    # fetch early when a message arrives. Measured here: about 0.8 s.
    assert 0 <= lateness < 2.0, lateness
    # The worker's own figure for it, as Prometheus scrapes it: the one step it fired late.
    assert scraped["clarion_timer_lateness_seconds_count"] == 1
    assert 0 <= scraped["clarion_timer_lateness_seconds_sum"] <= lateness
    assert scraped['clarion_timer_lateness_seconds_bucket{le="2"}'] == 1


def wait_for_sent(topic: str, bootstrap: str, count: int, timeout: float) -> list[Decision]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = asyncio.run(topics.read_all(bootstrap, topic))
        sent = [Decision.model_validate_json(v) for _, v in rows]
        sent = [d for d in sent if d.action == "sent"]
        if len(sent) >= count:
            return sorted(sent, key=lambda d: d.at)
        time.sleep(1)
    raise AssertionError(f"fewer than {count} sent decisions after {timeout}s")
