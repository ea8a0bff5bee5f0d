"""A message delivered in the consumer loop's own task, and cut short (streams/kafka/handoff.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP
from structlog.testing import capture_logs

from streams.kafka.handoff import CutShort, FlowSuspended
from streams.kafka.transport import ClarionApp


async def test_a_delivery_that_finishes_returns_its_result_and_leaves_the_task_alone() -> None:
    async def deliver() -> str:
        await asyncio.sleep(0)
        return "delivered"

    assert await CutShort().run(deliver()) == (True, "delivered")
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_cut_ends_a_waiting_delivery_and_the_loop_goes_on() -> None:
    delivery, flow = CutShort(), asyncio.Event()
    cancelled = []

    async def deliver() -> str:
        try:
            await flow.wait()  # Faust's conductor waiting for the flow to resume
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "too late"

    async def rebalance() -> None:
        await asyncio.sleep(0.01)
        delivery.cut()

    cutter = asyncio.create_task(rebalance())
    assert await delivery.run(deliver()) == (False, None)
    await cutter
    assert cancelled == [True], "the delivery itself was cancelled"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "the loop's task is not left cancelled"
    assert await delivery.run(asyncio.sleep(0, "next")) == (True, "next")


async def test_a_cut_with_no_delivery_running_changes_nothing() -> None:
    delivery = CutShort()
    delivery.cut()
    assert await delivery.run(asyncio.sleep(0, "x")) == (True, "x")


async def test_stopping_the_loop_itself_is_not_taken_for_a_cut() -> None:
    delivery = CutShort()

    async def loop() -> None:
        await delivery.run(asyncio.Event().wait())

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    delivery.cut()
    task.cancel()  # the Fetcher being stopped, at the same moment
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failing_delivery_raises_as_before() -> None:
    async def deliver() -> None:
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        await CutShort().run(deliver())


async def test_the_flow_event_still_waits_like_an_event() -> None:
    flow = FlowSuspended()
    waiter = asyncio.ensure_future(flow.wait())  # how mode's wait_first takes it
    await asyncio.sleep(0)
    assert not waiter.done()
    flow.set()
    assert await waiter is True


def _consumer(tmp_path: Path) -> Any:
    app = ClarionApp("delivery-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    return app.consumer  # built, not started: nothing connects


async def test_the_consumer_delivers_in_the_loops_own_task(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    loop_task = asyncio.current_task()

    async def on_message() -> str:
        assert asyncio.current_task() is loop_task, "no task of its own"
        return "queued"

    got = await consumer.wait_first(on_message(), consumer.suspend_flow.wait())
    assert got.results == ["queued"] and not got.stopped


async def test_a_rebalance_cuts_the_consumers_waiting_delivery_short(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    resumed = asyncio.Event()

    async def on_message() -> None:
        await resumed.wait()  # the conductor waiting for flow control
        raise AssertionError("delivered after the rebalance began")

    delivering = asyncio.create_task(
        consumer.wait_first(on_message(), consumer.suspend_flow.wait())
    )
    await asyncio.sleep(0.01)
    with capture_logs() as logs:
        consumer.stop_flow()
    got = await asyncio.wait_for(delivering, timeout=2)
    assert (got.done, got.stopped) == ([], True)
    assert [e["event"] for e in logs] == ["consumer.delivery_cut_short"]
    resumed.set()
    await asyncio.sleep(0.01)

    async def never() -> None:
        raise AssertionError("delivered while the flow is stopped")

    got = await consumer.wait_first(never(), consumer.suspend_flow.wait())
    assert (got.done, got.stopped) == ([], True), "not even started while stopped"
    consumer.resume_flow()


async def test_other_waits_of_the_consumer_are_modes_own(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    ready = asyncio.Event()
    ready.set()
    got = await consumer.wait_first(ready, timeout=1.0)
    assert (got.done, got.stopped) == ([ready], False)


async def test_a_rebalance_stops_the_flow_of_a_worker_that_had_no_partitions(
    tmp_path: Path,
) -> None:
    """Fault 7 in streams/kafka/transport.py: Faust stops the flow only when the consumer
    has an assignment. A worker with none kept it running into the next rebalance, handed
    its new partitions' records to the agents before the seek, and recovery's end then
    cleared them from the agents' queues, unacknowledged (the cluster's take-over test)."""

    def given_nothing(name: str) -> ClarionApp:
        app = ClarionApp(name, broker="kafka://127.0.0.1:1", datadir=str(tmp_path / name))
        app.consumer.assignment = lambda: set()  # type: ignore[method-assign]  # joined, given nothing
        app.flow_control.resume()  # as the recovery of that empty assignment left it
        return app

    faust_own = given_nothing("faust")
    await faust.App._on_partitions_revoked(faust_own, set())
    assert faust_own.consumer.flow_active and faust_own.flow_control.is_active(), "the defect"

    app = given_nothing("clarion")
    await app._on_partitions_revoked(set())
    assert not app.consumer.flow_active, "the consumer would hand records on during recovery"
    assert not app.flow_control.is_active(), "the agents' queues would take records"


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_stream_records_fetched_during_a_rebalance_are_read_again_after_it(
    tmp_path: Path,
) -> None:
    """Fault 8 in streams/kafka/transport.py: recovery's end clears the agents' queues, so
    a stream record handed on before it would be lost; its partition is sought back to
    it instead. A table's changelog records go on: recovery reads them then."""
    app = ClarionApp("early-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    consumer = app.consumer
    stream, changelog, gone = TP("requests", 0), TP("t-changelog", 0), TP("requests", 1)
    consumer.assignment = lambda: {stream, changelog}  # type: ignore[method-assign]
    consumer._is_changelog_tp = lambda tp: tp.topic.endswith("-changelog")  # type: ignore[method-assign]
    sought: list[tuple[TP, int]] = []
    consumer._thread.seek = lambda tp, offset: sought.append((tp, offset))  # type: ignore[method-assign]
    fetched = {
        stream: [_Record(7), _Record(8)],
        changelog: [_Record(3)],
        gone: [_Record(5)],  # revoked meanwhile: nothing to seek, the new owner reads it
    }

    kept = consumer._too_early(fetched)

    assert list(kept) == [changelog] and [r.offset for r in kept[changelog]] == [3]
    assert sought == [(stream, 7)]
