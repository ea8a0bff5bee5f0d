"""The worker's garbage-collector helpers: the start-up heap frozen, long pauses logged."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from streams.runtime import collector


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


def _pauses_logged(threshold_s: float) -> list[dict[str, object]]:
    """The `gc.pause` events of one full collection, watched with this threshold."""
    watcher = collector.watch(threshold_s)
    try:
        with capture_logs() as logs:
            gc.collect()
    finally:
        gc.callbacks.remove(watcher)
    return [e for e in logs if e["event"] == "gc.pause"]


def test_a_collection_at_least_as_long_as_the_threshold_is_logged() -> None:
    pauses = _pauses_logged(0.0)
    assert pauses, "a full collection takes some time, so a zero threshold logs it"
    last = pauses[-1]
    assert last["generation"] == 2 and last["log_level"] == "warning"
    assert isinstance(last["ms"], float) and last["ms"] >= 0
    assert isinstance(last["tracked"], int) and last["tracked"] > 0


def test_a_shorter_collection_is_not_logged() -> None:
    assert _pauses_logged(60.0) == []


def test_a_replay_collects_rarely_and_leaves_the_thresholds_as_it_found_them() -> None:
    before = gc.get_threshold()
    with collector.for_replay():
        assert gc.get_threshold() == collector.REPLAY_THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), collector.for_replay():
        raise RuntimeError("a replay that fails")
    assert gc.get_threshold() == before
