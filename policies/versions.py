"""Which policy version is in force at an instant.

A published version takes effect at an instant of its own (`effective_at`),
chosen when it is published, not when a worker happens to read it. Every
input is decided under the version in force at the input's `now`, so a replay
of the same inputs with the same versions gives the same decisions, whichever
worker, and whenever: the change is an input like any other, on the same clock.
The version a worker starts with (`CLARION_POLICIES_DIR`) is in force from the
beginning of time until the first published one takes over.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime

from policies.model import PolicySet

BEGINNING = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InForce:
    """One version's turn: from `effective_at` until the next one's."""

    effective_at: datetime
    policy: PolicySet


class PolicyVersions:
    """The versions in effective order; a later one with the same instant wins."""

    def __init__(self, first: PolicySet) -> None:
        self._turns: list[InForce] = [InForce(BEGINNING, first)]
        self._instants: list[datetime] = [BEGINNING]
        self._by_version: dict[str, PolicySet] = {first.version: first}

    def add(self, effective_at: datetime, policy: PolicySet) -> None:
        """Put `policy` in force from `effective_at` (a rollback is an earlier set, added again)."""
        if effective_at.tzinfo is None:
            raise ValueError("effective_at must carry its offset")
        at = effective_at.astimezone(UTC)
        index = bisect.bisect_right(self._instants, at)
        self._instants.insert(index, at)
        self._turns.insert(index, InForce(at, policy))
        self._by_version[policy.version] = policy

    def at(self, now: datetime) -> PolicySet:
        """The version in force at `now`: the last one effective at or before it."""
        return self._turns[bisect.bisect_right(self._instants, now.astimezone(UTC)) - 1].policy

    @property
    def latest(self) -> PolicySet:
        """The version that will be in force once every one published has taken effect."""
        return self._turns[-1].policy

    @property
    def turns(self) -> list[InForce]:
        return list(self._turns)

    def known(self, version: str) -> PolicySet | None:
        """A set by its version, if any turn has it: the one an open case opened under."""
        return self._by_version.get(version)
