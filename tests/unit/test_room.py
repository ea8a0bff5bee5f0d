"""Fetched records wait for room in their agent's queue, so no agent's full queue holds
up another's records (streams/kafka/room.py)."""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from streams.kafka.room import Room


@dataclass
class FakeQueue:
    maxsize: int
    size: int = 0

    def qsize(self) -> int:
        return self.size


BULK, URGENT = TP("requests", 0), TP("requests-urgent", 0)


def test_a_full_queue_holds_its_records_and_lets_the_others_by() -> None:
    bulk, urgent = FakeQueue(4, size=4), FakeQueue(4)
    room = Room(lambda tp: [bulk] if tp == BULK else [urgent])
    handed = room.take({BULK: ["b1", "b2"], URGENT: ["u1"]})
    assert handed == {URGENT: ["u1"]}
    assert len(room) == 2
    bulk.size = 3  # the agent took one
    assert room.take({BULK: ["b3"]}) == {BULK: ["b1"]}  # held first, one at a time
    bulk.size = 0
    assert room.take({}) == {BULK: ["b2", "b3"]}
    assert len(room) == 0


def test_partitions_sharing_a_queue_share_its_room_and_take_turns() -> None:
    shared = FakeQueue(2)
    a, b = TP("events", 0), TP("events", 1)
    room = Room(lambda tp: [shared])
    assert room.take({a: ["a1", "a2", "a3"], b: ["b1"]}) == {a: ["a1", "a2"]}
    shared.size = 1
    assert room.take({}) == {a: ["a3"]}  # a was held first
    shared.size = 1
    assert room.take({}) == {b: ["b1"]}  # then b's turn
    room.take({a: ["a4"]})
    room.forget()
    assert len(room) == 0


def test_a_partition_with_no_queue_of_its_own_is_not_held() -> None:
    room = Room(lambda tp: [])
    assert room.take({BULK: ["b1", "b2"]}) == {BULK: ["b1", "b2"]}


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(0, 6)), max_size=40))
def test_nothing_is_lost_reordered_or_over_a_queue_s_room(
    steps: list[tuple[int, int, int]],
) -> None:
    """Each step: partition p fetches n records, then its agent takes k from its queue."""
    queues = {p: FakeQueue(3) for p in range(3)}
    room = Room(lambda tp: [queues[tp.partition]])
    fetched: dict[int, list[int]] = {p: [] for p in range(3)}
    handed: dict[int, list[int]] = {p: [] for p in range(3)}
    counter = 0
    for p, n, k in steps:
        new = list(range(counter, counter + n))
        counter += n
        fetched[p] += new
        for tp, records in room.take({TP("t", p): new} if new else {}).items():
            queue = queues[tp.partition]
            queue.size += len(records)
            assert queue.size <= queue.maxsize
            handed[tp.partition] += records
        queues[p].size = max(0, queues[p].size - k)
    for q in queues.values():
        q.size = 0
    for _ in range(len(room) + 1):
        for tp, records in room.take({}).items():
            handed[tp.partition] += records
        for q in queues.values():
            q.size = 0
    assert handed == fetched
