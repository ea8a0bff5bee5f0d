"""Where a customer's messages belong: Kafka's default partitioner, as the Java client has it."""

from __future__ import annotations

import pytest

from streams.kafka.topics import home_partition

# Kafka's own test vectors for murmur2 (clients' UtilsTest.testMurmur2), as signed ints.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12, 1024])
def test_home_partition_is_the_java_clients_default(partitions: int) -> None:
    for key, signed in JAVA_MURMUR2.items():
        # Java: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions
        assert home_partition(key, partitions) == (signed & 0x7FFFFFFF) % partitions
