"""The latency benchmark's raw floor: plain aiokafka, consume -> decode -> produce, no framework.

`tests/benchmarks/latency.py` runs this as its own process, as it runs the bare
Faust agent, to show what the broker and the client alone cost in latency at
the benchmark's rate. Same fetch wait as the worker (10 ms); each batch is
forwarded and flushed before the next fetch, as a pipeline stage would.

    python -m tests.benchmarks.raw_forward BOOTSTRAP SOURCE SINK READY_FILE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def forward(bootstrap: str, source: str, sink: str, ready: Path) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id="raw-forward-bench",
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)  # fixed now, so nothing produced from here on is missed
        ready.touch()
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for messages in batch.values():
                for message in messages:
                    decoded = json.loads(message.value or b"{}")
                    await producer.send(sink, key=message.key, value=json.dumps(decoded).encode())
            if batch:
                await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    bootstrap, source, sink, ready = sys.argv[1:5]
    asyncio.run(forward(bootstrap, source, sink, Path(ready)))


if __name__ == "__main__":
    main()
