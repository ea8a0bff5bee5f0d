"""Three Apache Kafka nodes in one KRaft quorum, for the fault tests (issue 20).

Each node is broker and controller, as in a small production cluster; topics
are made with replication factor 3 and written with `min.insync.replicas=2`,
so one node may be down and every acknowledged write is still on two disks.
The tests kill a node (SIGKILL, as a machine lost), take one down for a while,
and stop and relaunch the whole cluster on its log dirs.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tests.apache_kafka import ApacheKafka, cluster_id, jars

SIZE = 3


class KafkaCluster:
    """``with KafkaCluster() as cluster: cluster.bootstrap``."""

    def __init__(self, size: int = SIZE, start_timeout: float = 90.0) -> None:
        self.nodes = [ApacheKafka(start_timeout, node_id=i + 1, replicas=size) for i in range(size)]
        voters = ",".join(node.voters for node in self.nodes)
        for node in self.nodes:
            node.voters = voters

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> ApacheKafka:
        return next(node for node in self.nodes if node.node_id == node_id)

    def start(self) -> KafkaCluster:
        cluster = cluster_id()
        jars()  # fetched once, before the nodes look for them side by side
        # Formatting is a JVM start each (about 2 s): side by side.
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.format(cluster), self.nodes))
        self.launch_all()
        return self

    def launch_all(self) -> None:
        """Start every node that is down and wait until each sees all of them."""
        for node in self.nodes:
            if not node.running:
                node.launch()
        for node in self.nodes:
            node.wait_ready(brokers=len(self.nodes))

    def relaunch(self, node: ApacheKafka) -> None:
        """Bring one node back on its log dir and wait until the cluster lists it again."""
        node.launch()
        node.wait_ready(brokers=len(self.nodes))

    def terminate_all(self) -> None:
        """Every node shut down cleanly, side by side; the log dirs stay."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.terminate(), self.nodes))

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> the node id leading it now."""
        return asyncio.run(_leaders(self.bootstrap, topic))

    def in_sync(self, topic: str, timeout: float = 60.0) -> None:
        """Until every partition of `topic` has all its replicas in sync again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = asyncio.run(_describe(self.bootstrap, topic))
            if all(len(p["isr"]) == len(self.nodes) for p in described):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{topic}: replicas not back in sync in {timeout} s")

    def __enter__(self) -> KafkaCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _describe(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions (leader, replicas, isr), asked again while a node is down:
    the admin client sends to a node it picks, which may be the one just killed."""
    for attempt in range(20):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            (described,) = await admin.describe_topics([topic])
            partitions: list[dict[str, Any]] = described["partitions"]
            return partitions
        except KafkaError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise AssertionError("unreachable")


async def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    return {int(p["partition"]): int(p["leader"]) for p in await _describe(bootstrap, topic)}
