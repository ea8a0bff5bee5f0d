"""Back-off, the token bucket and the circuit breaker, on fixed clocks and random draws."""

from __future__ import annotations

import asyncio
import heapq

import pytest

from channels.limits import CircuitBreaker, TokenBucket, backoff
from schemas.types import Priority


def test_backoff_doubles_up_to_the_cap_with_jitter_below_the_bound() -> None:
    low, high = (lambda: 0.0), (lambda: 1.0)
    assert [backoff(n, 1.0, 10.0, high) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert [backoff(n, 1.0, 10.0, low) for n in (1, 2, 5)] == [0.5, 1.0, 5.0]


def test_the_bucket_spends_its_burst_then_waits_for_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        bucket = TokenBucket(rate=10.0, burst=2.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(5):
            await bucket.acquire()

    asyncio.run(run())
    assert len(slept) == 3  # two from the burst, then one every 1/rate seconds
    assert all(abs(s - 0.1) < 1e-9 for s in slept)


def test_the_breaker_opens_waits_lets_one_trial_through_and_closes() -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=5.0)
    breaker.record("transient", 0.0)
    breaker.record("permanent", 0.5)  # says nothing of the provider's health: resets the streak
    breaker.record("transient", 1.0)
    assert breaker.state == "closed" and breaker.allows(1.0)
    breaker.record("transient", 2.0)
    assert breaker.state_at(6.9) == "open" and breaker.state_at(7.0) == "half_open"
    assert breaker.state == "open"  # reading what a call would find changes nothing
    assert breaker.state == "open" and not breaker.allows(6.9)
    assert breaker.allows(7.0) and not breaker.allows(7.0)  # one trial only
    breaker.record("transient", 7.5)
    assert breaker.state == "open" and not breaker.allows(12.4)
    assert breaker.allows(12.5)
    breaker.record("accepted", 12.6)
    assert breaker.state == "closed" and breaker.allows(12.6)


def test_the_bucket_says_how_long_a_new_caller_would_wait() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(rate=2.0, burst=1.0, clock=lambda: now[0], sleep=sleep)
    assert bucket.wait_s() == 0.0
    asyncio.run(bucket.acquire())
    assert bucket.wait_s() == 0.5  # the next token is half a second away
    now[0] += 0.25
    assert bucket.wait_s() == 0.25


class VirtualTime:
    """A clock that moves only when every task waits: sleeps end in time order, at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._seq, done))
        await done

    async def run_until(self, until: float) -> None:
        while True:
            for _ in range(500):  # let every task run until it waits (a few per waiter)
                await asyncio.sleep(0)
            if not self._sleepers or self._sleepers[0][0] > until:
                self.now = until
                return
            self.now, _, done = heapq.heappop(self._sleepers)
            done.set_result(None)


def test_urgent_waiters_go_before_bulk_ones_and_first_attempts_before_retries() -> None:
    """Issue 23: a fraud alert joins a queue of 20 reminders and goes with the next token."""
    clock = VirtualTime()
    served: list[str] = []

    async def send(name: str, priority: Priority, retry: bool = False) -> None:
        await bucket.acquire(priority, retry)
        served.append(name)

    async def run() -> None:
        nonlocal bucket
        bucket = TokenBucket(rate=10.0, burst=1.0, clock=lambda: clock.now, sleep=clock.sleep)
        tasks = [asyncio.create_task(send(f"bulk-{n}", "bulk")) for n in range(20)]
        tasks += [asyncio.create_task(send(f"retry-{n}", "bulk", True)) for n in range(2)]
        await clock.run_until(0.25)  # the burst and two more reminders go
        assert served == ["bulk-0", "bulk-1", "bulk-2"]
        tasks.append(asyncio.create_task(send("fraud", "urgent")))
        tasks.append(asyncio.create_task(send("due-soon", "normal")))
        await clock.run_until(10.0)
        await asyncio.gather(*tasks)

    bucket: TokenBucket
    asyncio.run(run())
    assert served[3:5] == ["fraud", "due-soon"], "the next two tokens"
    assert served[-2:] == ["retry-0", "retry-1"], "bulk retries after every first attempt"
    assert len(served) == 24


def test_a_reserved_share_keeps_urgent_capacity_and_bulk_is_not_starved() -> None:
    """Urgent traffic steady below its share gets all it asks for at once; bulk the rest."""
    clock = VirtualTime()
    counts = {"urgent": 0, "bulk": 0}
    waits: list[float] = []

    async def bulk_forever() -> None:
        while True:
            await bucket.acquire("bulk")
            counts["bulk"] += 1

    async def urgent_every(seconds: float) -> None:
        asked = 0.0
        while True:
            asked += seconds
            await clock.sleep(asked - clock.now)
            await bucket.acquire("urgent")
            waits.append(clock.now - asked)
            counts["urgent"] += 1

    async def run() -> None:
        nonlocal bucket
        bucket = TokenBucket(rate=10.0, clock=lambda: clock.now, sleep=clock.sleep, reserve=0.3)
        tasks = [asyncio.create_task(f) for f in (bulk_forever(), urgent_every(0.5))]
        await clock.run_until(60.25)  # the 120th urgent message is asked for at 60.0
        for task in tasks:
            task.cancel()

    bucket: TokenBucket
    asyncio.run(run())
    assert counts["urgent"] == 120, "two a second, every one"
    assert max(waits) <= 0.1 + 1e-9, "never more than one token's interval"
    # Bulk keeps the rest of the rate up to its 70% share: 7 a second, not starved.
    print(f"bulk {counts['bulk'] / 60.25:.2f}/s beside urgent 2/s; rate 10/s, reserve 30%")
    assert 6.9 * 60 <= counts["bulk"] <= 7.0 * 60.25 + 7, "its share, and its burst"
    assert counts["urgent"] + counts["bulk"] <= 10.0 * 60.25 + 10, "the rate, and the burst"


def test_without_a_reserve_a_batch_uses_the_whole_rate() -> None:
    clock = VirtualTime()
    sent = [0]

    async def bulk_forever() -> None:
        while True:
            await bucket.acquire("bulk")
            sent[0] += 1

    async def run() -> None:
        nonlocal bucket
        bucket = TokenBucket(rate=10.0, burst=1.0, clock=lambda: clock.now, sleep=clock.sleep)
        task = asyncio.create_task(bulk_forever())
        await clock.run_until(30.0)
        task.cancel()

    bucket: TokenBucket
    asyncio.run(run())
    assert 299 <= sent[0] <= 301


def test_a_reserve_is_a_share_below_the_whole_rate() -> None:
    for share in (-0.1, 1.0):
        with pytest.raises(ValueError, match="reserve is a share of the rate"):
            TokenBucket(rate=10.0, reserve=share)
