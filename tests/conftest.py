from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.loader import load_directory
from policies.model import PolicySet
from streams.cli.demo import demo_settings
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
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
