"""How hard the dispatcher may push a provider: back-off, a rate limit, and a circuit breaker.

Time is an argument (`now`, monotonic seconds) wherever a decision depends on
it, so the tests drive these with a fake clock; only `TokenBucket.acquire`
sleeps, and it sleeps on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from schemas.types import Priority


def backoff(attempt: int, base_s: float, max_s: float, rng: Callable[[], float]) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with full jitter.

    Full jitter (a uniform draw below the exponential bound) spreads the
    retries of many messages failed by one outage, so they do not return together.
    """
    bound = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return float(bound * (0.5 + 0.5 * rng()))


_RANK: dict[Priority, int] = {"urgent": 0, "normal": 1, "bulk": 2}
_ROUNDING_S = 1e-9


class TokenBucket:
    """`rate` sends per second on average, bursts up to `burst`.

    Waiters are served by priority (urgent, normal, bulk), first attempts before
    retries within a priority, then in order of arrival: a fraud alert waits at most
    for the next token, never behind a batch of reminders, and a bulk retry never
    before a first attempt. Only the waiter at the head sleeps for its token.

    `reserve` keeps a share of the rate for urgent messages: normal and bulk ones
    draw also from a second bucket at `rate * (1 - reserve)`. So a steady batch
    leaves that share unused when nothing urgent comes; 0 (the default) uses the
    whole rate and relies on the order alone.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reserve: float = 0.0,
    ) -> None:
        if not 0.0 <= reserve < 1.0:
            raise ValueError("reserve is a share of the rate, from 0 up to (not including) 1")
        self.rate, self.burst = rate, burst if burst is not None else max(1.0, rate)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = self.burst, clock()
        self._others_rate = rate * (1.0 - reserve)
        self._others_burst = max(1.0, self.burst * (1.0 - reserve))
        self._others = self._others_burst if reserve > 0 else math.inf
        self._queue: list[tuple[int, bool, int]] = []
        self._seq = itertools.count()
        self._turn = asyncio.Condition()

    def wait_s(self, priority: Priority = "normal") -> float:
        """How long `acquire` would wait now, behind the callers it would queue behind."""
        self._refill()
        rank = _RANK[priority]
        ahead = sum(1 for queued in self._queue if queued[0] <= rank)
        wait = (1 + ahead - self._tokens) / self.rate
        if rank > 0 and self._others != math.inf:
            ahead = sum(1 for queued in self._queue if queued[0] > 0 and queued[0] <= rank)
            wait = max(wait, (1 + ahead - self._others) / self._others_rate)
        return max(0.0, wait)

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._others != math.inf:
            self._others = min(self._others_burst, self._others + elapsed * self._others_rate)

    def _needs(self, rank: int) -> float:
        """Seconds until a caller of this rank could take a token; 0 when it can now (or
        within a rounding error of it: a wait too short to move the clock would spin)."""
        need = (1 - self._tokens) / self.rate
        if rank > 0 and self._others != math.inf:
            need = max(need, (1 - self._others) / self._others_rate)
        return need if need > _ROUNDING_S else 0.0

    async def acquire(self, priority: Priority = "normal", retry: bool = False) -> None:
        key = (_RANK[priority], retry, next(self._seq))
        heapq.heappush(self._queue, key)
        try:
            async with self._turn:
                while True:
                    await self._turn.wait_for(lambda: self._queue[0] == key)
                    self._refill()
                    need = self._needs(key[0])
                    if need <= 0:
                        break
                    self._turn.release()  # others may queue (and overtake) while it sleeps
                    try:
                        await self._sleep(need)
                    finally:
                        await self._turn.acquire()
                self._tokens -= 1
                if key[0] > 0:
                    self._others -= 1
        finally:
            self._queue.remove(key)
            heapq.heapify(self._queue)
            async with self._turn:
                self._turn.notify_all()


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
