"""SIGKILL a worker mid-stream, twice: every step still fires exactly once.

Three hundred customers (the stories, copied) on the real broker. The first
worker is killed while it takes in events. The second is killed while the
virtual clock fires their timers days ahead. The third finishes. The sandbox
outbox must then hold exactly the notifications `policy simulate` predicts:
none missing, none twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from channels.sandbox import read_outbox
from policies.model import PolicySet
from streams.cli.demo import (
    advance_clock,
    produce_lines,
    settle,
    start_worker,
    stop_worker,
)
from streams.kafka import topics
from tests.benchmarks.memory import logged
from tests.conftest import Broker
from tests.integration.scaled import GROUPS, prepare

# This test found the three restart faults in docs/operations.md, "Restarts".
pytestmark = pytest.mark.integration


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


# Tansu only; on Kafka: test_kafka_faults.py kills a worker on a three-node cluster.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_sigkill_twice_every_step_fires_exactly_once(
    on_both: Broker, tmp_path: Path, policy: PolicySet
) -> None:
    broker = on_both
    scaled = prepare(broker.bootstrap, tmp_path, policy, "crash", **broker.settings)
    settings, lines, expected, until = (
        scaled.settings,
        scaled.lines,
        scaled.expected,
        scaled.until,
    )
    assert len(expected) == 27 * GROUPS
    outbox = settings.outbox_path
    log = (tmp_path / "workers.log").open("wb")
    workers = []
    try:
        first = start_worker(settings, log)
        workers.append(first)
        asyncio.run(produce_lines(broker.bootstrap, settings.topic(topics.ACCOUNT_EVENTS), lines))
        held = kill_when(first, outbox, 100)
        assert held < len(expected)

        second = start_worker(settings, log)
        workers.append(second)
        asyncio.run(settle(settings, 90, lambda: second.poll() is None))
        before_clock = len(read_outbox(outbox))
        asyncio.run(advance_clock(settings, until))
        kill_when(second, outbox, before_clock + 100)

        third = start_worker(settings, log)
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
    # The restarted workers read the customers' changelog in bulk (streams/kafka/bulk_load.py),
    # and Faust's recovery replayed only what came after.
    bulk = [e for e in logged(tmp_path / "workers.log") if e.get("event") == "table.read_in_bulk"]
    customers = [e["records"] for e in bulk if e["table"] == "customers"]
    assert len(customers) >= 3 and customers[0] == 0 and all(n > 0 for n in customers[1:])
