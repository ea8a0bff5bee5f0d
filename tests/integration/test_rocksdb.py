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
from schemas.events import parse_event
from streams import topics
from streams.broker import EmbeddedBroker
from streams.demo import demo_settings, feed_and_settle, start_worker, stop_worker
from tests.conftest import STORIES

pytestmark = pytest.mark.integration


def test_the_stories_on_the_rocksdb_store(
    broker: EmbeddedBroker, tmp_path: Path, policy: PolicySet
) -> None:
    settings = demo_settings(
        broker.bootstrap,
        tmp_path,
        app_id="clarion-rocks",
        topic_prefix="rocks.",
        store="rocksdb://",
        log_format="json",
    )
    asyncio.run(topics.ensure_topics(settings))
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)  # type: ignore[arg-type]
        try:
            decisions, _ = asyncio.run(
                feed_and_settle(settings, [STORIES], 90, lambda: worker.poll() is None)
            )
        finally:
            stop_worker(worker)
    assert list((tmp_path / "worker-data").rglob("*.db")), "no RocksDB files were written"

    events = [parse_event(line) for line in STORIES.read_text().splitlines() if line.strip()]
    simulated, _ = simulate(events, policy)

    def key(d: object) -> tuple[str, ...]:
        fields = ("at", "customer_id", "action", "channel", "template", "reason")
        return tuple(str(getattr(d, f)) for f in fields)

    kept = ("sent", "suppressed", "handoff", "stopped", "deferred")
    assert sorted(key(d) for d in decisions if d.action in kept) == sorted(
        key(d) for d in simulated if d.action in kept
    )
