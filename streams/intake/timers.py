"""Durable timers: which customers have a step falling due, per partition.

The truth lives in the `customers` table: every customer's state carries its
pending steps, and the stored value records the partition it belongs to and
its next due instant where they are read without decoding the state
(streams/intake/stored.py). This module keeps only an index over it in memory, one
heap per partition, which a worker rebuilds from the table when it is assigned
a partition (after a restart or a rebalance). A tick pops what is due: the work
is in proportion to the steps falling due, not to the cases open.

Time moves per partition, through clock messages on the `timer-ticks` topic
(sent every `tick_interval_s` by each worker for its own partitions on the wall
clock, or by the demo on the virtual one) and, on the event clock, through each
input's own `occurred_at` for its own customer. A customer's inputs on one
partition are in order, so a timer never fires ahead of an earlier input for the
same customer.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from datetime import datetime


class TimerIndex:
    """Per partition: a heap of (due, customer), and whether it has been built."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[datetime, str]]] = {}

    def loaded(self, partition: int) -> bool:
        return partition in self._heaps

    def load(self, partition: int, entries: Iterable[tuple[datetime, str]]) -> None:
        heap = list(entries)
        heapq.heapify(heap)
        self._heaps[partition] = heap

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the index of partitions this worker no longer owns (all when None)."""
        if partitions is None:
            self._heaps.clear()
        for partition in partitions or ():
            self._heaps.pop(partition, None)

    def push(self, partition: int, due: datetime, customer: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (due, customer))

    def pop_due(self, partition: int, now: datetime) -> tuple[datetime, str] | None:
        """The earliest entry due at or before `now`, or None. Entries may be stale:
        the caller checks the customer's state, which is the truth."""
        heap = self._heaps.get(partition)
        if not heap or heap[0][0] > now:
            return None
        return heapq.heappop(heap)

    def pending(self) -> int:
        return sum(len(h) for h in self._heaps.values())


def clock_message(now: datetime) -> bytes:
    return json.dumps({"clock": now.isoformat()}).encode()


def read_clock(raw: bytes) -> datetime:
    """The instant a clock message carries; ValueError when it is not one."""
    value = json.loads(raw)["clock"]
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError(f"clock {value!r} has no time zone")
    return at
