"""Inputs merged across topics in time order per partition (streams/kafka/ordering.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.loader import load_directory
from policies.simulator import Simulator, simulate
from schemas.events import Event, event_from_dict
from streams.app import EXAMPLE_POLICIES
from streams.kafka.ordering import CrossTopicOrder, OrderedScheduling, occurred
from tests import samples

TOPICS = ("account-events", "customer-profiles", "preference-updates")
T0 = datetime(2026, 11, 20, 14, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    value: bytes
    timestamp: int
    offset: int


def record(minutes: int, offset: int) -> Record:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return Record(f'{{"event_id": "e", "occurred_at": "{at}"}}'.encode(), 0, offset)


def members(partition: int = 0) -> set[TP]:
    return {TP(t, partition) for t in TOPICS}


def test_occurred_reads_the_inputs_own_time_and_falls_back_to_the_records() -> None:
    assert occurred(record(5, 0)) == (T0 + timedelta(minutes=5)).timestamp()
    receipt = Record(b'{"notification_id":"n","at":"2026-11-20T14:00:00Z"}', 0, 0)
    assert occurred(receipt) == T0.timestamp()
    assert occurred(Record(b"{not json", 1_700_000_000_000, 0)) == 1_700_000_000.0
    assert occurred(Record(b'{"occurred_at": "yesterday at noon"}', 5000, 0)) == 5.0


def test_an_event_waits_for_a_profile_that_comes_within_the_wait() -> None:
    order = CrossTopicOrder(frozenset(TOPICS), wait_s=1.0)
    event = record(10, 0)
    first = order.take({TP(TOPICS[0], 0): [event]}, 100.0, members(), lambda tp: True)
    assert first.order == [] and len(order) == 1, "held: the other topics are empty"
    profile = record(5, 0)
    second = order.take({TP(TOPICS[1], 0): [profile]}, 100.4, members(), lambda tp: True)
    assert second.order == [], "preferences may still come"
    third = order.take({}, 101.0, members(), lambda tp: True)
    assert [r for _, r in third.order] == [profile, event], "the profile occurred first"
    assert len(order) == 0


def test_without_a_wait_only_a_topic_with_more_on_the_broker_holds_others_back() -> None:
    order = CrossTopicOrder(frozenset(TOPICS), wait_s=0.0)
    event = record(10, 0)
    behind = TP(TOPICS[1], 0)
    held = order.take({TP(TOPICS[0], 0): [event]}, 100.0, members(), lambda tp: tp != behind)
    assert held.order == []
    profile = record(5, 0)
    out = order.take({behind: [profile]}, 100.1, members(), lambda tp: True)
    assert [r for _, r in out.order] == [profile, event]
    alone = order.take({TP(TOPICS[0], 0): [record(20, 1)]}, 100.2, members(), lambda tp: True)
    assert len(alone.order) == 1, "caught up everywhere: nothing waits"
    stuck = order.take({TP(TOPICS[0], 0): [record(30, 2)]}, 200.0, members(), lambda tp: False)
    assert stuck.order == []
    late = order.take({}, 202.5, members(), lambda tp: False)
    assert len(late.order) == 1, "a paused topic holds others back 2 s at most"


def test_other_topics_pass_through_and_the_scheduler_keeps_the_order() -> None:
    order = CrossTopicOrder(frozenset(TOPICS), wait_s=0.0)
    outbound = TP("notifications-outbound", 0)
    r1, r2 = record(9, 0), record(1, 0)
    out = order.take(
        {outbound: [r1], TP(TOPICS[0], 0): [r2]}, 1.0, {outbound, *members()}, lambda tp: True
    )
    assert list(OrderedScheduling().iterate(out)) == [(outbound, r1), (TP(TOPICS[0], 0), r2)]
    order.take({TP(TOPICS[0], 0): [record(3, 1)]}, 1.0, members(), lambda tp: False)
    order.forget()
    assert len(order) == 0


arrivals = st.lists(
    st.tuples(st.sampled_from(range(len(TOPICS))), st.integers(0, 600), st.integers(0, 3)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(arrivals, st.lists(st.floats(0.0, 0.9), min_size=1, max_size=6))
def test_any_interleaving_within_the_wait_comes_out_in_time_order(
    inputs: list[tuple[int, int, int]], gaps: list[float]
) -> None:
    """Inputs fetched in any order, all within the wait, come out sorted by when they
    occurred per partition, each topic's partition in its own order, none lost."""
    scale = 0.9 / max(sum(gaps), 0.9)  # every fetch within 0.9 s of the first
    order = CrossTopicOrder(frozenset(TOPICS), wait_s=1.0)
    assigned = members(0) | members(1)
    # Each topic's partition is in its own order, as Kafka keeps it: sorted by time here.
    per_tp: dict[TP, list[Record]] = {}
    for n, (topic, minutes, partition) in enumerate(sorted(inputs, key=lambda i: i[1])):
        per_tp.setdefault(TP(TOPICS[topic], partition % 2), []).append(record(minutes, n))
    batches: list[dict[TP, list[Record]]] = [{} for _ in gaps]
    for i, (tp, records) in enumerate(sorted(per_tp.items())):
        cut = len(records) // 2
        batches[i % len(gaps)].setdefault(tp, []).extend(records[:cut])
        later = min(i % len(gaps) + 1, len(gaps) - 1)
        batches[later].setdefault(tp, []).extend(records[cut:])
    out: list[tuple[TP, Record]] = []
    now = 0.0
    for gap, batch in zip(gaps, batches, strict=True):
        fetched = {tp: rs for tp, rs in batch.items() if rs}
        out += order.take(fetched, now, assigned, lambda tp: True).order
        now += gap * scale
    out += order.take({}, now + 2.0, assigned, lambda tp: True).order
    assert sorted(r.offset for _, r in out) == sorted(
        r.offset for rs in per_tp.values() for r in rs
    )
    for partition in (0, 1):
        times = [occurred(r) for tp, r in out if tp.partition == partition]
        assert times == sorted(times)
    for tp, records in per_tp.items():
        assert [r for t, r in out if t == tp] == records


STORY_KINDS = [
    "payment.missed",
    "payment.received",
    "transaction.large",
    "consent.changed",
    "customer.profile.updated",
    "customer.preferences.updated",
    "dispute.opened",
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(STORY_KINDS), st.integers(0, 3 * 24 * 60)),
        min_size=1,
        max_size=10,
        unique_by=lambda k: k[1],  # distinct instants: ties have no order to keep
    ),
    st.randoms(use_true_random=False),
)
def test_any_arrival_across_topics_within_the_wait_decides_as_the_sorted_order(
    story: list[tuple[str, int]], rng: Any
) -> None:
    """A customer's inputs on their three topics, arriving interleaved in any way (each
    topic in its own order) within the wait, reach the engine in `occurred_at` order, so
    the decisions are those of the sorted story (the simulator refuses any other order)."""
    policy = load_directory(EXAMPLE_POLICIES)
    events = [_story_event(kind, T0 + timedelta(minutes=m), n) for n, (kind, m) in enumerate(story)]
    per_topic: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        per_topic.setdefault(_topic_of(e), []).append(e)
    arrival: list[tuple[str, Event]] = []
    queues = {t: list(es) for t, es in per_topic.items()}
    while queues:
        topic = rng.choice(sorted(queues))
        arrival.append((topic, queues[topic].pop(0)))
        if not queues[topic]:
            del queues[topic]
    order = CrossTopicOrder(frozenset(TOPICS), wait_s=1.0)
    by_value = _index(events)
    released: list[Event] = []
    for n, (topic, e) in enumerate(arrival):
        value = e.model_dump_json().encode()
        fetched = {TP(topic, 0): [Record(value, 0, n)]}
        taken = order.take(fetched, n * 0.9 / len(arrival), members(), lambda tp: True)
        released += [by_value[r.value] for _, r in taken.order]
    released += [
        by_value[r.value] for _, r in order.take({}, 5.0, members(), lambda tp: True).order
    ]
    assert len(released) == len(events)
    sim = Simulator(policy)
    got = [d for e in released for d in sim.apply(e)]  # raises if out of order
    expected, _ = simulate(events, policy, released[-1].occurred_at)
    got += sim.advance(released[-1].occurred_at)
    assert got == expected


def _story_event(kind: str, at: datetime, n: int) -> Event:
    data = dict(samples.DATA[kind])
    return event_from_dict(
        samples.event(
            kind,
            event_id=f"evt-{n}",
            occurred_at=at.isoformat(),
            account_id=None if kind.startswith(("customer.", "consent.")) else "A-1",
            data=data,
        )
    )


def _topic_of(e: Event) -> str:
    return {
        "customer.profile.updated": "customer-profiles",
        "customer.preferences.updated": "preference-updates",
    }.get(e.type, "account-events")


def _index(events: list[Event]) -> dict[bytes, Event]:
    return {e.model_dump_json().encode(): e for e in events}
