"""Python's cyclic garbage collector in a worker: kept off the start-up heap, and watched.

A full collection walks every tracked object and stops the event loop while it
does. A worker's heap after start-up (Faust, aiokafka, pydantic's validators,
the policy set: about 150,000 objects) never becomes garbage, yet each full
collection walked it again: 50-100 ms pauses in the latency benchmark's
worker, each one a stall of every message in flight. `freeze_startup` moves it
out of the collector's sight once the worker is ready (`gc.freeze`, meant for
exactly this). Objects made later are collected as before.

What makes full collections long after that is what a worker keeps alive as
objects. Decoded customer states were the worst (about 20 tracked objects a
state: a cache of 100,000 made one collection take about 2 s), which is why
intake keeps none between batches (`streams/intake/working.py`). `watch` logs every
collection that stops the loop for longer than the threshold, so the cost
shows in the logs, not only in the latency (docs/operations.md, "Garbage
collector pauses").

A replay (`clarion policy simulate`, the engine benchmark) is the opposite
case: it holds every customer's state as objects until the end, and nothing
waits on a pause. With the collector's default thresholds, a third of a
100,000-customer replay went to full collections walking those states;
`for_replay` makes collections rarer.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger()


def freeze_startup() -> int:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc.startup_frozen", objects=frozen)
    return frozen


class PauseWatch:
    """A `gc.callbacks` entry that logs collections longer than `threshold_s`."""

    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        if took >= self.threshold_s:
            log.warning(
                "gc.pause",
                ms=round(took * 1000, 1),
                generation=info["generation"],
                collected=info["collected"],
                tracked=len(gc.get_objects(info["generation"])),
            )


def watch(threshold_s: float) -> PauseWatch:
    """Start logging long collections; `gc.callbacks.remove(...)` the result to stop."""
    watcher = PauseWatch(threshold_s)
    gc.callbacks.append(watcher)
    return watcher


REPLAY_THRESHOLDS = (50_000, 20, 100)
"""Allocations before a young collection, and collections before each older one's."""


@contextmanager
def for_replay() -> Iterator[None]:
    """Rarer collections while a replay runs; the thresholds it found, after.

    100,000 customers' replay: 13.8 s of 38.2 s in the collector with the
    defaults (700, 10, 10), 3.5 s of 26.2 s with these (docs/performance.md).
    """
    before = gc.get_threshold()
    gc.set_threshold(*REPLAY_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
