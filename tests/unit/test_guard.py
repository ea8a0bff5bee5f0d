"""The guard halts a worker on an agent's crash or a refused write, and holds commits."""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka.guard import Guard


def guard() -> tuple[Guard, list[int]]:
    exits: list[int] = []
    return Guard(exit_code=70, grace_s=0.01, exit=exits.append), exits


async def test_a_refused_delivery_halts_and_settled_says_so() -> None:
    g, exits = guard()
    delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    g.watch(delivered)
    g.watch(refused)
    delivered.set_result(None)
    refused.set_exception(RuntimeError("TopicAuthorizationFailed"))
    assert await g.settled() is False
    assert g.halted == "the broker refused a record this worker produced"
    await asyncio.sleep(0.05)
    assert exits == [70]


async def test_settled_waits_for_what_is_in_flight() -> None:
    g, exits = guard()
    slow: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    g.watch(slow)
    asyncio.get_running_loop().call_later(0.02, slow.set_result, None)
    assert await g.settled() is True
    assert slow.done() and g.halted is None and exits == []


async def test_an_agent_that_raises_halts_the_worker_and_never_returns() -> None:
    g, exits = guard()

    async def body() -> None:
        raise ValueError("boom")

    agent = asyncio.ensure_future(g.run_agent("intake", body()))
    await asyncio.sleep(0.05)
    assert not agent.done()  # Faust never sees the exception, so it acks nothing
    assert g.halted == "agent intake crashed" and exits == [70]
    assert await g.settled() is False  # and nothing is committed any more
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent


async def test_a_cancelled_agent_is_not_a_crash() -> None:
    g, exits = guard()
    agent = asyncio.ensure_future(g.run_agent("dispatch", asyncio.sleep(10)))
    await asyncio.sleep(0)
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    assert g.halted is None and exits == []
