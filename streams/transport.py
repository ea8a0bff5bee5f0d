"""A Faust app whose consumers' fetch wait is a setting.

Faust 0.15 fixes the consumer's `fetch_max_wait_ms` at 1500. Kafka answers a
fetch as soon as data arrives, so that wait costs nothing there. Tansu, the
embedded broker, holds each fetch for the whole wait. On Tansu every hop between
agents was 0.4 to 1.5 s late: p50 376 ms at 1500 ms against 4 ms at 10 ms, in a
raw aiokafka check. The demo and the tests set it low. Production leaves it
unset and keeps Faust's value.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TransportT


class ClarionApp(faust.App):
    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        if self._fetch_max_wait_ms is None:
            return super()._new_transport()
        transport = _transport(self._fetch_max_wait_ms)
        return transport(self.conf.broker_consumer, self)  # type: ignore[call-arg]


def _transport(wait_ms: int) -> type[driver.Transport]:
    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms  # read when it starts, which is later
            return consumer

    class WaitingConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer

    return Transport
