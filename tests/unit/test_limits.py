"""Back-off, the token bucket and the circuit breaker, on fixed clocks and random draws."""

from __future__ import annotations

import asyncio

from channels.limits import CircuitBreaker, TokenBucket, backoff


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
