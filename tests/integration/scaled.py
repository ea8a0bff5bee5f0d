"""Three hundred customers (the stories, copied) and what `policy simulate` says they get."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from policies.model import PolicySet
from policies.simulator import default_until, simulate
from schemas.decisions import Decision
from schemas.events import event_from_dict
from streams.cli.demo import demo_settings
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests.conftest import STORIES

GROUPS = 30  # ten customers each


@dataclass(frozen=True)
class ScaledRun:
    settings: Settings
    lines: list[str]
    """The events, still in occurred_at order (the stories file is)."""
    expected: set[str]
    """The notification ids the simulator sends."""
    simulated: list[Decision]
    """Every decision the simulator makes: what the ledger must hold."""
    until: datetime
    """Where the simulator stops its clock: 30 days after the last event."""


def scaled_lines() -> list[str]:
    lines = []
    for raw in (json.loads(line) for line in STORIES.read_text().splitlines() if line.strip()):
        for group in range(GROUPS):
            copied = {
                **raw,
                "customer_id": f"{raw['customer_id']}-{group}",
                "event_id": f"{raw['event_id']}-{group}",
            }
            lines.append(json.dumps(copied))
    return lines


def prepare(
    bootstrap: str, tmp_path: Path, policy: PolicySet, name: str, **overrides: Any
) -> ScaledRun:
    """Fresh topics (four partitions) on the shared broker, and the simulator's answer;
    `overrides`: what the broker needs of the worker's settings (conftest.Broker)."""
    run = uuid.uuid4().hex[:8]
    settings = demo_settings(
        bootstrap,
        tmp_path,
        app_id=f"clarion-{name}-{run}",
        topic_prefix=f"{name}{run}.",
        partitions=4,
        log_format="json",
        **overrides,
    )
    # The providers' real rates (1 call/s per caller number) would make the
    # three hundred customers' calls take minutes; these tests are about who
    # gets what, exactly once, so the sandbox is not throttled here.
    fast = {"rate_sms_per_s": 1000.0, "rate_voice_per_s": 1000.0, "rate_email_per_s": 1000.0}
    settings = settings.model_copy(update=fast)
    asyncio.run(topics.ensure_topics(settings))
    lines = scaled_lines()
    events = [event_from_dict(json.loads(line)) for line in lines]
    decisions, _ = simulate(events, policy)
    expected = {d.notification_id for d in decisions if d.action == "sent"}
    until = default_until(events)
    assert until is not None
    return ScaledRun(settings, lines, expected, decisions, until)
