from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policies.loader import load_directory
from policies.model import PolicySet
from streams.cli.demo import demo_settings
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests.apache_kafka import ApacheKafka

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "deploy" / "policies"
STORIES = ROOT / "deploy" / "demo" / "stories.jsonl"
MALFORMED = ROOT / "deploy" / "demo" / "malformed.jsonl"


@pytest.fixture(scope="session")
def policy() -> PolicySet:
    return load_directory(POLICIES)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real broker for the integration tests; each test uses its own topic prefix."""
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log") as running:
        yield running


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """Apache Kafka 4.1, one KRaft node, shared by the tests that run on it (issue 20)."""
    with ApacheKafka() as running:
        yield running


KAFKA_SETTINGS: dict[str, Any] = {
    "session_timeout_s": 6.0,  # Kafka's group.min.session.timeout.ms
    "heartbeat_interval_s": 1.0,
    "fetch_max_wait_ms": None,  # Kafka answers a fetch as soon as data arrives
}
"""What a worker needs on Apache Kafka that the demo's settings (made for Tansu) do not give."""


@dataclass(frozen=True)
class Broker:
    """The broker one run of a test is on, and the worker settings that broker needs."""

    name: str
    bootstrap: str
    settings: dict[str, Any]


@pytest.fixture(params=["tansu", "kafka"])
def on_both(request: pytest.FixtureRequest, broker: EmbeddedBroker) -> Broker:
    """Run the test on Tansu and on Apache Kafka: the guarantees that matter most are proven
    on the broker banks run (issue 20). The Kafka node is shared and started once."""
    if request.param == "tansu":
        return Broker("tansu", broker.bootstrap, {})
    kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
    return Broker("kafka", kafka.bootstrap, KAFKA_SETTINGS)


def run_settings(bootstrap: str, tmp_path: Path, name: str, **overrides: Any) -> Settings:
    """Demo settings for one test's worker: an app id and topics of its own, created."""
    run = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "app_id": f"clarion-{name}-{run}",
        "topic_prefix": f"{name}{run}.",
        "log_format": "json",
    }
    settings = demo_settings(bootstrap, tmp_path, **{**values, **overrides})
    asyncio.run(topics.ensure_topics(settings))
    return settings


def wait_ready(settings: Settings, worker: Any) -> None:
    """Until the worker's `/ready` says yes: its partitions assigned and its tables read."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker died while starting"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("the worker was not ready in 60 s")


def metrics(port: int) -> dict[str, float]:
    """The worker's /metrics, sample by sample (comments and types left out)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in samples}
