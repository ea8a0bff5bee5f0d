"""The offline driver: replay events on a virtual clock and fire every timer on time.

It calls the same `decide` the workers call, with the clock at each event's
`occurred_at` and at each timer's due instant, so its decisions are what the
pipeline would record. A timer due at the same instant as an event fires first:
what was due by then has happened.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime, timedelta

from policies.engine import Input, Tick, decide
from policies.model import PolicySet
from policies.state import CustomerState
from policies.versions import PolicyVersions
from schemas.decisions import Decision
from schemas.events import Event
from schemas.notifications import DeliveryReceipt

Replayable = Event | DeliveryReceipt
"""What a replay feeds: events from every input topic, and receipts from `delivery-receipts`."""


def instant(item: Replayable) -> datetime:
    return item.occurred_at if isinstance(item, Event) else item.at


DEFAULT_HORIZON = timedelta(days=30)
"""How long past the last event `simulate` keeps firing timers when no `until` is given."""


class Simulator:
    """Customer states and a timer queue, advanced by events in time order."""

    def __init__(self, policy: PolicySet | PolicyVersions) -> None:
        """`policy`: one set, or the versions and the instants they take effect (a policy
        change in the stream, as `clarion policy publish` makes one for the workers)."""
        self.versions = policy if isinstance(policy, PolicyVersions) else PolicyVersions(policy)
        self.states: dict[str, CustomerState] = {}
        self.clock: datetime | None = None
        self._timers: list[tuple[datetime, str]] = []

    def apply(self, event: Replayable) -> list[Decision]:
        """Fire what is due by the event's (or receipt's) instant, then apply it."""
        at = instant(event)
        if self.clock is not None and at < self.clock:
            name = event.event_id if isinstance(event, Event) else event.notification_id
            raise ValueError(
                f"{name} occurred at {at.isoformat()}, before the clock "
                f"({self.clock.isoformat()}): feed events in occurred_at order"
            )
        decisions = self.advance(at)
        return decisions + self._step(event.customer_id, event, at)

    def advance(self, to: datetime) -> list[Decision]:
        """Fire every timer due at or before `to`, each at its own instant."""
        decisions: list[Decision] = []
        while self._timers and self._timers[0][0] <= to:
            due, customer = heapq.heappop(self._timers)
            state = self.states.get(customer)
            if state is None or state.due != due:
                continue  # stale: the step fired, moved or was cancelled since
            decisions += self._step(customer, Tick(customer), due)
        self.clock = to if self.clock is None else max(self.clock, to)
        return decisions

    def _step(self, customer: str, item: Input, now: datetime) -> list[Decision]:
        state = self.states.get(customer) or CustomerState(customer_id=customer)
        outcome = decide(state, item, now, self.versions.at(now), self.versions.known)
        self.states[customer] = outcome.state
        self.clock = now if self.clock is None else max(self.clock, now)
        due = outcome.state.due
        if due is not None:
            heapq.heappush(self._timers, (due, customer))
        return outcome.decisions


def default_until(events: Iterable[Replayable]) -> datetime | None:
    """Where a run stops its clock when not told: 30 days after the last event (None: none)."""
    last = max((instant(e) for e in events), default=None)
    return None if last is None else last + DEFAULT_HORIZON


def simulate(
    events: Iterable[Replayable],
    policy: PolicySet | PolicyVersions,
    until: datetime | None = None,
) -> tuple[list[Decision], Simulator]:
    """Every decision for `events` (sorted by occurred_at, stable) and timers up to `until`.

    Without `until`, timers fire up to 30 days after the last event.
    """
    ordered = sorted(events, key=instant)
    sim = Simulator(policy)
    decisions: list[Decision] = []
    for event in ordered:
        if until is not None and instant(event) > until:
            break
        decisions += sim.apply(event)
    until = until if until is not None else default_until(ordered)
    if until is not None:
        decisions += sim.advance(until)
    return decisions, sim
