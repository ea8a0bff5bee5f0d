"""Engine benchmark: inputs and decisions per second on the ten stories' shapes, scaled.

Run: `make bench-engine` (or `python -m tests.benchmarks.engine --customers 100000`).
Prints figures; asserts nothing about speed (a timed test would flake). One
process, one core: the simulator drives `decide` exactly as a worker would,
with the timers of every customer firing on the virtual clock.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from policies import windows
from policies.engine import Input, decide
from policies.loader import load_directory
from policies.model import PolicySet, Window
from policies.simulator import Simulator
from policies.state import CustomerState
from policies.windows import next_allowed
from schemas.customer import QuietHours
from schemas.events import Event, event_from_dict
from streams.runtime.collector import REPLAY_THRESHOLDS, for_replay

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "deploy" / "policies"
STORIES = ROOT / "deploy" / "demo" / "stories.jsonl"


def scaled_events(customers: int) -> list[Event]:
    """The stories, copied per group of ten customers, spread over an hour of starts."""
    stories = [json.loads(line) for line in STORIES.read_text().splitlines() if line.strip()]
    events: list[Event] = []
    for group in range(max(1, customers // 10)):
        shift = timedelta(seconds=group % 3600)
        for raw in stories:
            copied = copy.deepcopy(raw)
            copied["customer_id"] = f"{raw['customer_id']}-{group}"
            copied["event_id"] = f"{raw['event_id']}-{group}"
            at = datetime.fromisoformat(raw["occurred_at"].replace("Z", "+00:00")) + shift
            copied["occurred_at"] = at.isoformat()
            events.append(event_from_dict(copied))
    events.sort(key=lambda e: e.occurred_at)
    return events


class CountingSimulator(Simulator):
    """The simulator, counting what it feeds `decide` (events and timer ticks)."""

    def __init__(self, policy: PolicySet) -> None:
        super().__init__(policy)
        self.inputs: Counter[str] = Counter()

    def _step(self, customer: str, item: Input, now: datetime) -> list:  # type: ignore[type-arg]
        self.inputs["event" if isinstance(item, Event) else "tick"] += 1
        return super()._step(customer, item, now)


class CollectorClock:
    """Time spent in Python's cyclic garbage collector, from its own callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> CollectorClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def engine_throughput(policy: PolicySet, customers: int) -> None:
    """The replay twice: the collector at Python's defaults, then as `policy simulate` sets it."""
    events = scaled_events(customers)
    print("collector at Python's defaults (700, 10, 10):")
    replay(policy, events)
    with for_replay():
        print(f"collector as `clarion policy simulate` sets it {REPLAY_THRESHOLDS}:")
        replay(policy, events)
    per_kind(policy, [e for e in events if int(e.customer_id.rsplit("-", 1)[1]) < 100])


def replay(policy: PolicySet, events: list[Event]) -> None:
    windows._ANSWERS.clear()  # each replay searches its windows afresh
    sim = CountingSimulator(policy)
    gc.collect()
    with CollectorClock() as collector:
        started = time.perf_counter()
        decisions = 0
        for event in events:
            decisions += len(sim.apply(event))
        decisions += len(sim.advance(events[-1].occurred_at + timedelta(days=30)))
        elapsed = time.perf_counter() - started
    inputs = sum(sim.inputs.values())
    searches = len(windows._ANSWERS)  # one per (minute, zones, window, quiet hours) met
    print(f"  customers            {len(sim.states):>12,}")
    print(f"  events               {sim.inputs['event']:>12,}")
    print(f"  timer ticks          {sim.inputs['tick']:>12,}")
    print(f"  decisions            {decisions:>12,}")
    print(f"  elapsed              {elapsed:>12.2f} s")
    print(f"  inputs per second    {inputs / elapsed:>12,.0f}")
    print(f"  decisions per second {decisions / elapsed:>12,.0f}")
    share = collector.seconds / elapsed
    print(f"  in the collector     {collector.seconds:>12.2f} s  ({share:.0%} of elapsed)")
    print(f"  window searches      {searches:>12,}  (the rest from the minute's cache)")
    del sim
    gc.collect()


def per_kind(policy: PolicySet, events: list[Event]) -> None:
    """Median cost of one `decide` per input type, each on the state it really meets."""
    states: dict[str, CustomerState] = {}
    costs: dict[str, list[float]] = {}
    for event in events:
        state = states.get(event.customer_id) or CustomerState(customer_id=event.customer_id)
        started = time.perf_counter()
        outcome = decide(state, event, event.occurred_at, policy)
        costs.setdefault(event.type, []).append(time.perf_counter() - started)
        states[event.customer_id] = outcome.state
    print("median decide() per event type (no timers fired in between):")
    for kind, values in sorted(costs.items(), key=lambda kv: -median(kv[1])):
        print(f"  {kind:<30} {median(values) * 1e6:>8.1f} us  (n={len(values)})")


def next_allowed_cost() -> None:
    """The cost of computing the next allowed instant, in its common shapes."""
    day = Window(start="08:00", end="21:00")
    voice = Window(days=["mon", "tue", "wed", "thu", "fri", "sat"], start="08:00", end="21:00")
    quiet = QuietHours(start="20:00", end="09:00")
    fallback = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
    friday_noon = datetime(2026, 11, 20, 17, tzinfo=UTC)
    friday_night = datetime(2026, 11, 21, 4, tzinfo=UTC)
    saturday_night = datetime(2026, 11, 22, 4, tzinfo=UTC)
    cases = [
        ("inside the window, one zone", friday_noon, ["America/Chicago"], day, None),
        ("overnight, one zone", friday_night, ["America/Chicago"], day, None),
        ("overnight, four fallback zones", friday_night, fallback, day, None),
        ("overnight, four zones + quiet hours", friday_night, fallback, day, quiet),
        ("voice over a Sunday, four zones", saturday_night, fallback, voice, None),
    ]
    print("next_allowed():                         searched    answered from the minute's cache")
    for name, at, zones, window, quiet_hours in cases:
        rounds = 2000
        started = time.perf_counter()
        for _ in range(rounds):
            windows._search(at, zones, window, quiet_hours)
        searched = (time.perf_counter() - started) / rounds
        next_allowed(at, zones, window, quiet_hours)
        started = time.perf_counter()
        for _ in range(rounds):
            next_allowed(at, zones, window, quiet_hours)
        cached = (time.perf_counter() - started) / rounds
        print(f"  {name:<38} {searched * 1e6:>8.1f} us {cached * 1e6:>8.1f} us")


def state_size(policy: PolicySet) -> None:
    """Bytes of customer state held in memory per customer, mid-escalation."""
    events = scaled_events(1000)
    sim = Simulator(policy)
    cut = next(e.occurred_at for e in events if e.type == "payment.received")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for event in events:
        if event.occurred_at > cut:
            break
        sim.apply(event)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"state in memory      {grown / len(sim.states):>12,.0f} bytes per customer (traced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    policy = load_directory(POLICIES)
    engine_throughput(policy, args.customers)
    next_allowed_cost()
    state_size(policy)


if __name__ == "__main__":
    main()
