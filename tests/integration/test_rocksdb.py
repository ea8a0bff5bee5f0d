"""The RocksDB table store: the same stories, the same decisions as the memory store.

The store only changes where table values live (on local disk, recovered in
seconds after a restart); this checks the worker really runs on it, timers
included, and ends where `policy simulate` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from policies.model import PolicySet
from policies.simulator import simulate
from schemas.decisions import Decision
from schemas.events import parse_event
from streams.cli.demo import (
    advance_clock,
    demo_settings,
    feed_and_settle,
    horizon,
    produce_lines,
    read_lines,
    settle,
    start_worker,
    stop_worker,
)
from streams.kafka import topics
from streams.runtime.settings import Settings
from tests.benchmarks.memory import logged
from tests.conftest import STORIES, Broker

pytestmark = pytest.mark.integration


# Tansu only; on Kafka the cluster's take-over test runs three workers on RocksDB.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_the_stories_on_the_rocksdb_store(
    on_both: Broker, tmp_path: Path, policy: PolicySet
) -> None:
    settings = demo_settings(
        on_both.bootstrap,
        tmp_path,
        app_id="clarion-rocks",
        topic_prefix="rocks.",
        store="rocksdb://",
        log_format="json",
        **on_both.settings,
    )
    asyncio.run(topics.ensure_topics(settings))
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            decisions, _ = asyncio.run(
                feed_and_settle(settings, [STORIES], 90, lambda: worker.poll() is None)
            )
        finally:
            stop_worker(worker)
    assert list((tmp_path / "worker-data").rglob("*.db")), "no RocksDB files were written"

    assert_as_simulated(decisions, policy)


# Tansu only; on Kafka: test_kafka_faults.py's take-over reads the changelog onto a new disk.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_a_worker_on_a_new_disk_reads_the_changelog_in_bulk_and_goes_on(
    on_both: Broker, tmp_path: Path, policy: PolicySet
) -> None:
    """The stories taken in by one worker; their timers fired by another on an empty disk.

    The second one's RocksDB holds nothing, so it reads the customers'
    changelog in bulk (streams/kafka/bulk_load.py) before Faust's recovery. If that
    read wrote anything wrong, the timers would not fire as simulated.
    """

    def settings_in(workdir: Path) -> Settings:
        return demo_settings(
            on_both.bootstrap,
            workdir,
            app_id="clarion-rocks-bulk",
            topic_prefix="rocksbulk.",
            store="rocksdb://",
            log_format="json",
            **on_both.settings,
            log_level="info",
        )

    first, second = settings_in(tmp_path / "first"), settings_in(tmp_path / "second")
    asyncio.run(topics.ensure_topics(first))
    with (tmp_path / "first.log").open("wb") as log:
        worker = start_worker(first, log)
        try:
            account_events = first.topic(topics.ACCOUNT_EVENTS)
            asyncio.run(produce_lines(on_both.bootstrap, account_events, read_lines(STORIES)))
            asyncio.run(settle(first, 90, lambda: worker.poll() is None))
        finally:
            stop_worker(worker)
    until = horizon([STORIES])
    assert until is not None
    with (tmp_path / "second.log").open("wb") as log:
        worker = start_worker(second, log)
        try:
            asyncio.run(advance_clock(second, until))
            decisions, _ = asyncio.run(settle(second, 90, lambda: worker.poll() is None))
        finally:
            stop_worker(worker)
    read = [e for e in logged(tmp_path / "second.log") if e.get("event") == "table.read_in_bulk"]
    assert sum(e["records"] for e in read if e["table"] == "customers") >= 10
    assert_as_simulated(decisions, policy)
    # Ready, the worker took its start-up heap out of the collector's walks
    # (streams/runtime/collector.py).
    frozen = [e for e in logged(tmp_path / "second.log") if e.get("event") == "gc.startup_frozen"]
    assert len(frozen) == 1 and frozen[0]["objects"] > 50_000
    # Recovered, its changelogs were paused in aiokafka too (fault 5, streams/kafka/transport.py).
    paused = [
        e for e in logged(tmp_path / "second.log") if e.get("event") == "consumer.changelogs_paused"
    ]
    assert paused and all(e["partitions"] > 0 for e in paused)


def assert_as_simulated(decisions: list[Decision], policy: PolicySet) -> None:
    events = [parse_event(line) for line in STORIES.read_text().splitlines() if line.strip()]
    simulated, _ = simulate(events, policy)

    def key(d: object) -> tuple[str, ...]:
        fields = ("at", "customer_id", "action", "channel", "template", "reason")
        return tuple(str(getattr(d, f)) for f in fields)

    kept = ("sent", "suppressed", "handoff", "stopped", "deferred")
    assert sorted(key(d) for d in decisions if d.action in kept) == sorted(
        key(d) for d in simulated if d.action in kept
    )
