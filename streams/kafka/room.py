"""Fetched records handed to Faust only while their agent's queue has room for them.

Faust's consumer puts every fetched record in the queue of each agent that reads
its topic, one record at a time, and when a queue is full it waits there. So one
agent that drains slowly holds up every other agent of the worker: with a
nightly batch on `notifications-outbound`, the dispatch agent drains at the
provider's rate, its queue is full, and a fraud alert's request on the urgent
lane waited behind a whole fetch of the batch's requests (p99 6.6 s, 20,000
missed payments at once, `make bench-lanes`). Here a fetched record whose queue
has no room stays in this module, in its partition's order, until it has; the
consumer never waits on a full queue, and the other agents' records go by.

What is held stays small: Faust stops fetching a partition whose queue is under
pressure, so a partition holds at most what one fetch brought. A held record is
not handed on, so it is not acknowledged and no commit passes it; after a
rebalance the consumer reads again from the commits, and what was held is
dropped (`forget`), as the time order's held records are (kafka/ordering.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from faust.types import TP


class Queue(Protocol):
    maxsize: int

    def qsize(self) -> int: ...


class Room:
    """Records held per partition until their queues have room."""

    def __init__(self, queues: Callable[[TP], Sequence[Queue]]) -> None:
        self._queues = queues
        self._held: dict[TP, deque[Any]] = {}

    def __len__(self) -> int:
        return sum(len(held) for held in self._held.values())

    def take(self, fetched: Mapping[TP, list[Any]]) -> dict[TP, list[Any]]:
        """What fits now: first what was held, oldest partition first, then what came."""
        free: dict[int, float] = {}
        out: dict[TP, list[Any]] = {}
        for tp in list(self._held):
            held = self._held.pop(tp)
            n = self._room(tp, len(held), free)
            if n:
                out[tp] = [held.popleft() for _ in range(n)]
            if held:
                self._held[tp] = held  # at the end: the next call serves the others first
        for tp, records in fetched.items():
            if tp in self._held:
                self._held[tp].extend(records)
                continue
            n = self._room(tp, len(records), free)
            if n:
                out.setdefault(tp, []).extend(records[:n])
            if n < len(records):
                self._held[tp] = deque(records[n:])
        return out

    def _room(self, tp: TP, wanted: int, free: dict[int, float]) -> int:
        """How many of `wanted` records of `tp` its queues take now (taken from `free`)."""
        queues = self._queues(tp)
        for queue in queues:
            if id(queue) not in free:
                size = queue.maxsize
                free[id(queue)] = size - queue.qsize() if size > 0 else math.inf
        n = max(0, int(min([wanted, *(free[id(q)] for q in queues)])))
        for queue in queues:
            free[id(queue)] -= n
        return n

    def forget(self) -> None:
        """Drop everything held: after a rebalance the consumer reads from the commits again."""
        self._held.clear()
