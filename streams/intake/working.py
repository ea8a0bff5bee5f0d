"""One intake batch's view of the customer tables: read once, written once.

A batch may hold several inputs for one customer (and timers falling due for
others). Each customer's state is read from the table the first time the batch
needs it, changed in memory by every input after that, and written back once
when the batch ends. Same for the dedupe memory. Written back means one
changelog message per customer per batch, where there used to be one per input.

Decoded states are not kept from one batch to the next. A cache of them (until
2026-11-30) saved decoding, but a decoded state is about 20 objects that Python's
collector walks on every full collection: with it, a worker stopped for up to
200 ms at a time, and p99 latency at 500 events/s was 290 ms against 110 ms
without it, at no lower CPU per event (docs/performance.md, "Latency";
docs/operations.md, "Garbage collector pauses").

What the engine decided is held here too, and goes out when the batch ends in
an order that keeps the ledger true (docs/operations.md, "What the ledger can
say"): each changed state is encoded and read back first, and a customer whose
state would not read back has its inputs dead-lettered and nothing of theirs
written; then the notification requests, awaited until the broker has them;
then the decisions; then the states and the dedupe memory. So a `sent` row is
never written without its request, and an input refused leaves no row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import faust

from policies.state import CustomerState
from schemas.decisions import Decision
from schemas.notifications import NotificationRequest
from streams.intake import stored
from streams.intake.dedupe import RecentIds


class Table(Protocol):
    """What a batch needs of a table: `streams.kafka.transport.ClarionTable`."""

    def get(self, key: str) -> Any: ...

    async def write(self, key: str, value: Any) -> None: ...


Deliver = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]
"""Produce one record and return its delivery to await (`Outlets.deliver`)."""
Record = Callable[[Decision, bytes], Awaitable[None]]
"""Write one decision, already encoded, to the ledger (`Outlets.record_encoded`)."""


@dataclass
class _Entry:
    state: CustomerState
    partition: int
    event: faust.EventT[bytes]
    """An input of this batch from the customer's partition: the table write belongs to it."""
    dirty: bool = False
    inputs: list[faust.EventT[bytes]] = field(default_factory=list)
    """Every input of this batch that reached the customer (dead-lettered if it fails)."""
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    """(priority, request): the priority chooses the request's lane."""
    decisions: list[tuple[Decision, bytes]] = field(default_factory=list)


class Working:
    def __init__(
        self,
        customers: Table,
        seen: Table,
        window: timedelta,
        max_ids: int,
        enter: Callable[[faust.EventT[bytes]], None],
    ) -> None:
        self._customers, self._seen = customers, seen
        self._window, self._max_ids, self._enter = window, max_ids, enter
        self._states: dict[str, _Entry] = {}
        self._recent: dict[str, tuple[RecentIds, faust.EventT[bytes]]] = {}

    def state(self, customer: str, partition: int, event: faust.EventT[bytes]) -> CustomerState:
        entry = self._states.get(customer)
        if entry is None:
            entry = _Entry(self._load(customer), partition, event)
            self._states[customer] = entry
        if not any(seen is event for seen in entry.inputs):
            entry.inputs.append(event)
        return entry.state

    def replace(
        self, customer: str, partition: int, event: faust.EventT[bytes], state: CustomerState
    ) -> None:
        """Take `state` as the customer's, without reading what is stored (a repair)."""
        self._states[customer] = _Entry(state, partition, event, dirty=True, inputs=[event])

    def stored(self, customer: str) -> object:
        """The customer's value as the table holds it; None once this batch has read it,
        because from then on the batch's copy is the customer's state."""
        return None if customer in self._states else self._customers.get(customer)

    def emit(
        self, customer: str, requests: Sequence[NotificationRequest], decisions: Sequence[Decision]
    ) -> None:
        """Hold an engine step's outputs until the batch ends. Encoded now: what cannot be
        written raises here, before any of it is kept."""
        encoded = [(r.priority, r.model_dump_json().encode()) for r in requests]
        recorded = [(d, d.model_dump_json().encode()) for d in decisions]
        entry = self._states[customer]
        entry.requests += encoded
        entry.decisions += recorded

    def put(self, customer: str, state: CustomerState) -> None:
        entry = self._states[customer]
        entry.state, entry.dirty = state, True

    def due(self, customer: str) -> str | None:
        """The customer's next due instant as stored (ISO), as this batch sees it."""
        entry = self._states.get(customer)
        if entry is not None:
            due = entry.state.due
            return due.isoformat() if due else None
        found = stored.head(self._customers.get(customer))
        return found.due if found else None

    def recent(self, customer: str, event: faust.EventT[bytes]) -> RecentIds:
        found = self._recent.get(customer)
        if found is None:
            ids = RecentIds.from_json(self._seen.get(customer), self._window, self._max_ids)
            found = self._recent[customer] = (ids, event)
        return found[0]

    async def flush(
        self, deliver: Deliver, record: Record, lane: Callable[[str], str], max_bytes: int
    ) -> list[tuple[faust.EventT[bytes], Exception]]:
        """Write back what the batch did, in the order the module doc gives.

        Returns each input of a customer whose state would not read back, with why,
        for the caller to dead-letter; nothing of theirs is written. A refused request
        or table write raises: the worker halts (streams/kafka/guard.py) and commits
        nothing, and the batch is read again. `lane(priority)` names a request's topic.
        """
        failed: list[tuple[faust.EventT[bytes], Exception]] = []
        refused: set[str] = set()
        kept: list[tuple[str, _Entry, bytes | None]] = []
        for customer, entry in self._states.items():
            try:
                value = self._checked(entry, max_bytes) if entry.dirty else None
            except ValueError as exc:
                listed = {id(e) for e, _ in failed}  # a clock message may reach several
                failed += [(e, exc) for e in entry.inputs if id(e) not in listed]
                refused.add(customer)
                continue
            kept.append((customer, entry, value))
        deliveries = [
            await deliver(lane(priority), customer.encode(), request)
            for customer, entry, _ in kept
            for priority, request in entry.requests
        ]
        if deliveries:
            await asyncio.gather(*deliveries)  # a decision never names a request not out
        for _, entry, _ in kept:
            for decision, encoded in entry.decisions:
                await record(decision, encoded)
        for customer, entry, value in kept:
            if value is not None:
                self._enter(entry.event)
                await self._customers.write(customer, value)
        for customer, (ids, event) in self._recent.items():
            if not ids.changed or customer in refused:
                continue  # nothing accepted (a duplicate), or dead-lettered: replayable
            self._enter(event)
            await self._seen.write(customer, ids.to_json())
        return failed

    @staticmethod
    def _checked(entry: _Entry, max_bytes: int) -> bytes:
        """The state as stored, once it is known to read back and to fit a record."""
        try:
            value = stored.encode(entry.partition, entry.state.due, entry.state)
            stored.state(value)
        except (ValueError, RecursionError) as exc:
            raise ValueError("the customer's state would not be written and read back") from exc
        if len(value) > max_bytes:
            raise ValueError(f"the customer's state is {len(value)} bytes, over {max_bytes}")
        return value

    def _load(self, customer: str) -> CustomerState:
        try:
            found = stored.state(self._customers.get(customer))
        except (ValueError, RecursionError) as exc:
            raise StateUnreadable(customer) from exc
        return found or CustomerState(customer_id=customer)


class StateUnreadable(Exception):
    """A customer's stored state does not read back (an older version wrote it, or a bug)."""

    def __init__(self, customer: str) -> None:
        super().__init__(customer)
        self.customer = customer
