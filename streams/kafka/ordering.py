"""One customer's inputs in time order across topics, as Kafka Streams orders them.

A bank sends a customer's events, profile and preferences on three topics, and
Kafka keeps order only within one partition of one topic. Read as fetched, an
event could be decided before the profile that came a moment earlier on
another topic (issue 19). The topics are co-partitioned, so partition P of each
holds the same customers: this merges them, per partition number, by the time
the input says it occurred, the way Kafka Streams merges a task's partitions
(lowest timestamp first, idling up to `max.task.idle.ms` for an empty input).

A fetched record is held back while another input topic of its partition has
nothing buffered and may still have data: one the broker has more of than was
fetched (its lag is not known to be zero), or, with a wait set, any such topic,
until the record has been held that long. So with no wait set, ordering costs
nothing while the topics are caught up, and a backlog (a restart, a nightly
batch) is applied in time order; with a wait, inputs that arrive within it of
each other are too, and every input may wait that long when another topic is
quiet. Each partition of each topic is still read in its own order, so a
record held back holds back only what is behind it, and Faust's commits, which
follow acknowledgements, never pass a record not yet handed on.

It sits in the consumer (`transport.Consumer._getmany`) rather than in the
agent, because a record not handed to Faust yet is nobody's to acknowledge, and
the fetch loop comes round every fetch wait, so the waits end on time without
new input.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

_OCCURRED = re.compile(rb'"(?:occurred_at|at)"\s*:\s*"([^"]{10,40})"')


def occurred(record: Any) -> float:
    """When an input says it occurred (`occurred_at`, or a receipt's `at`), in seconds;
    the record's own timestamp when the value does not say (the input is then refused
    by intake all the same, in its place)."""
    value = record.value
    if isinstance(value, bytes):
        found = _OCCURRED.search(value, 0, 2048)
        if found is not None:
            try:
                return datetime.fromisoformat(found.group(1).decode()).timestamp()
            except ValueError:
                pass
    return float(record.timestamp or 0) / 1000.0


class Ordered(dict[TP, list[Any]]):
    """Fetched records, with the order the consumer is to hand them on in."""

    def __init__(self, order: list[tuple[TP, Any]]) -> None:
        super().__init__()
        for tp, record in order:
            self.setdefault(tp, []).append(record)
        self.order = order


class OrderedScheduling(DefaultSchedulingStrategy):
    """Faust's round robin, except for records this module has put in order."""

    def iterate(self, records: Mapping[TP, list[Any]]) -> Iterator[tuple[TP, Any]]:
        if isinstance(records, Ordered):
            return iter(records.order)
        return super().iterate(records)


class CrossTopicOrder:
    """The records of `topics` held back until their turn, per partition number."""

    def __init__(
        self, topics: frozenset[str], wait_s: float, stamp: Callable[[Any], float] = occurred
    ) -> None:
        self.topics, self.wait_s, self._stamp = topics, wait_s, stamp
        self._held: dict[TP, deque[tuple[float, float, Any]]] = {}
        """Per partition: (occurred, fetched at, record), in the partition's own order."""

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def take(
        self,
        fetched: Mapping[TP, list[Any]],
        now: float,
        assigned: set[TP],
        caught_up: Callable[[TP], bool],
    ) -> Ordered:
        """What to hand on now, in order: the fetched records of other topics as they came,
        then every held record whose turn it is. `now` is a monotonic clock's."""
        order: list[tuple[TP, Any]] = []
        for tp, records in fetched.items():
            if tp.topic not in self.topics:
                order += [(tp, record) for record in records]
                continue
            queue = self._held.setdefault(tp, deque())
            queue.extend((self._stamp(r), now, r) for r in records)
        busy = {tp.partition for tp, queue in self._held.items() if queue}
        groups: dict[int, list[TP]] = {}
        for tp in assigned:  # only partitions with something held: the rest have no turn
            if tp.topic in self.topics and tp.partition in busy:
                groups.setdefault(tp.partition, []).append(tp)
        for members in groups.values():
            order += self._merge(sorted(members), now, caught_up)
        return Ordered(order)

    def _merge(
        self, members: list[TP], now: float, caught_up: Callable[[TP], bool]
    ) -> list[tuple[TP, Any]]:
        out: list[tuple[TP, Any]] = []
        held = self._held
        while True:
            heads = [(held[tp][0][0], i, tp) for i, tp in enumerate(members) if held.get(tp)]
            if not heads:
                return out
            _, _, tp = min(heads)
            # How long the partition's longest-held record has waited (a head, since each
            # topic's partition is held in fetch order): past the wait, order yields.
            waited = now - min(held[m][0][1] for _, _, m in heads)
            empty = [m for m in members if not held.get(m)]
            if empty and waited < self.wait_s:
                return out  # another input may yet come before this one
            if any(not caught_up(m) for m in empty) and waited < max(self.wait_s, _LAG_WAIT_S):
                return out  # the broker has more of another input: fetch it first
            out.append((tp, held[tp].popleft()[2]))

    def forget(self) -> None:
        """Drop everything held: after a rebalance the consumer reads from the commits again."""
        self._held.clear()


_LAG_WAIT_S = 2.0
"""How long a record waits, at most, for another input the broker has more of (a partition
paused, say, fetches nothing): past it, order yields to progress."""
