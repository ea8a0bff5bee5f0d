"""The worker's garbage-collector helpers: the start-up heap frozen, long pauses logged."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from streams import collector


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_freezing_takes_what_is_alive_out_of_later_collections(unfrozen: None) -> None:
    kept = [[n] for n in range(1000)]  # tracked objects, alive now
    with capture_logs() as logs:
        frozen = collector.freeze_startup()
    assert frozen > len(kept) and gc.get_freeze_count() > len(kept)
    assert [e["event"] for e in logs] == ["gc.startup_frozen"]
    assert logs[0]["objects"] == frozen
    assert not any(obj is kept for obj in gc.get_objects()), "the collector no longer walks them"


def test_a_collection_at_least_as_long_as_the_threshold_is_logged() -> None:
    watcher = collector.watch(0.0)
    try:
        with capture_logs() as logs:
            gc.collect()
    finally:
        gc.callbacks.remove(watcher)
    pauses = [e for e in logs if e["event"] == "gc.pause"]
    assert pauses, "a full collection takes some time, so a zero threshold logs it"
    assert pauses[-1]["generation"] == 2 and pauses[-1]["log_level"] == "warning"
    assert pauses[-1]["ms"] >= 0 and pauses[-1]["tracked"] > 0


def test_a_shorter_collection_is_not_logged() -> None:
    watcher = collector.watch(60.0)
    try:
        with capture_logs() as logs:
            gc.collect()
    finally:
        gc.callbacks.remove(watcher)
    assert not [e for e in logs if e["event"] == "gc.pause"]
