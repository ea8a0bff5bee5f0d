from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.loader import load_directory
from policies.model import PolicySet
from streams.broker import EmbeddedBroker

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
