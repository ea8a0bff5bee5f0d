"""How hard the dispatcher may push a provider: back-off, a rate limit, and a circuit breaker.

Time is an argument (`now`, monotonic seconds) wherever a decision depends on
it, so the tests drive these with a fake clock; only `TokenBucket.acquire`
sleeps, and it sleeps on the event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal


def backoff(attempt: int, base_s: float, max_s: float, rng: Callable[[], float]) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with full jitter.

    Full jitter (a uniform draw below the exponential bound) spreads the
    retries of many messages failed by one outage, so they do not return together.
    """
    bound = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return float(bound * (0.5 + 0.5 * rng()))


class TokenBucket:
    """`rate` sends per second on average, bursts up to `burst`; waiters queue in order."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate, self.burst = rate, burst if burst is not None else max(1.0, rate)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = self.burst, clock()
        self._lock = asyncio.Lock()
        self._waiting = 0

    def wait_s(self) -> float:
        """How long `acquire` would wait now, behind the callers already waiting."""
        self._refill()
        return max(0.0, (1 + self._waiting - self._tokens) / self.rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    async def acquire(self) -> None:
        self._waiting += 1
        try:
            async with self._lock:  # first come, first served
                self._refill()
                if self._tokens < 1:
                    await self._sleep((1 - self._tokens) / self.rate)
                    self._refill()
                self._tokens -= 1
        finally:
            self._waiting -= 1


@dataclass
class CircuitBreaker:
    """Closed: calls go. After `failures` transient failures in a row: open for `cooldown_s`.

    Then half-open: one trial call goes; its success closes the circuit, its
    failure opens it again. Permanent failures say nothing about the provider's
    health and do not count.
    """

    failures: int
    cooldown_s: float
    state: Literal["closed", "open", "half_open"] = "closed"
    streak: int = 0
    opened_at: float = 0.0
    trial_out: bool = field(default=False)

    def allows(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            self.state, self.trial_out = "half_open", False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self.trial_out:
            self.trial_out = True
            return True
        return False

    def state_at(self, now: float) -> Literal["closed", "open", "half_open"]:
        """The state a call at `now` would find: an open circuit past its cool-down lets a trial."""
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            return "half_open"
        return self.state

    def reopens_at(self) -> float:
        """When an open circuit lets a trial through (monotonic seconds)."""
        return self.opened_at + self.cooldown_s

    def record(self, outcome: Literal["accepted", "transient", "permanent"], now: float) -> None:
        if outcome == "transient":
            self.streak += 1
            if self.state == "half_open" or self.streak >= self.failures:
                self.state, self.opened_at, self.trial_out = "open", now, False
            return
        self.streak = 0
        if self.state != "closed":
            self.state, self.trial_out = "closed", False


def jitter() -> float:
    """The default random source for `backoff` (a function, so tests can pin it)."""
    return random.random()
