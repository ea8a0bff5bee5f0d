"""SIGKILL a worker mid-stream, twice: every step still fires exactly once.

Three hundred customers (the stories, copied) on the real broker. The first
worker is killed while it takes in events. The second is killed while the
virtual clock fires their timers days ahead. The third finishes. The sandbox
outbox must then hold exactly the notifications `policy simulate` predicts:
none missing, none twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from channels.sandbox import read_outbox
from policies.model import PolicySet
from policies.simulator import DEFAULT_HORIZON, simulate
from schemas.events import event_from_dict
from streams import topics
from streams.broker import EmbeddedBroker
from streams.demo import (
    advance_clock,
    demo_settings,
    produce_lines,
    settle,
    start_worker,
    stop_worker,
)
from tests.conftest import STORIES

# Not in the default run (`make test-crash` runs it): on Tansu 0.6 a worker restarted
# after SIGKILL sometimes stops committing one partition (about one run in three),
# and the test then times out. See docs/operations.md, "Known broker limits".
pytestmark = [pytest.mark.integration, pytest.mark.crash]

GROUPS = 30  # ten customers each


def scaled_lines() -> list[str]:
    lines = []
    for raw in (json.loads(line) for line in STORIES.read_text().splitlines() if line.strip()):
        for group in range(GROUPS):
            lines.append(
                json.dumps(
                    {
                        **raw,
                        "customer_id": f"{raw['customer_id']}-{group}",
                        "event_id": f"{raw['event_id']}-{group}",
                    }
                )
            )
    return lines  # still in occurred_at order: the stories file is


def kill_when(proc: object, outbox: Path, at_least: int, timeout: float = 60.0) -> int:
    """SIGKILL the worker once the outbox holds `at_least` messages; return how many it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = len(read_outbox(outbox))
        if count >= at_least:
            proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            proc.wait()  # type: ignore[attr-defined]
            return count
        time.sleep(0.01)
    raise AssertionError(f"the outbox never reached {at_least} messages")


def test_sigkill_twice_every_step_fires_exactly_once(
    broker: EmbeddedBroker, tmp_path: Path, policy: PolicySet
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = demo_settings(
        broker.bootstrap,
        tmp_path,
        app_id=f"clarion-crash-{run}",
        topic_prefix=f"crash{run}.",
        partitions=4,
        log_format="json",
    )
    asyncio.run(topics.ensure_topics(settings))
    lines = scaled_lines()
    events = [event_from_dict(json.loads(line)) for line in lines]
    decisions, _ = simulate(events, policy)
    expected = {d.notification_id for d in decisions if d.action == "sent"}
    assert len(expected) == 27 * GROUPS
    until = max(e.occurred_at for e in events) + DEFAULT_HORIZON
    outbox = settings.outbox_path
    log = (tmp_path / "workers.log").open("wb")
    workers = []
    try:
        first = start_worker(settings, log)  # type: ignore[arg-type]
        workers.append(first)
        asyncio.run(produce_lines(broker.bootstrap, settings.topic(topics.ACCOUNT_EVENTS), lines))
        held = kill_when(first, outbox, 100)
        assert held < len(expected)

        second = start_worker(settings, log)  # type: ignore[arg-type]
        workers.append(second)
        asyncio.run(settle(settings, 90, lambda: second.poll() is None))
        before_clock = len(read_outbox(outbox))
        asyncio.run(advance_clock(settings, until))
        kill_when(second, outbox, before_clock + 100)

        third = start_worker(settings, log)  # type: ignore[arg-type]
        workers.append(third)
        asyncio.run(advance_clock(settings, until))  # the killed worker may not have seen it
        asyncio.run(settle(settings, 90, lambda: third.poll() is None))
    finally:
        for worker in workers:
            stop_worker(worker)
        log.close()

    sent = [m["notification_id"] for m in read_outbox(outbox)]
    assert len(sent) == len(set(sent)), "a notification was sent twice"
    assert set(sent) == expected
