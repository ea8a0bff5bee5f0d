"""A worker judges a published set before it puts it in force (issue 22, part 1)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from channels.templates import Templates
from policies.loader import load_directory
from schemas.published import PublishedPolicy
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from streams.versions import catalog, follower
from streams.versions.files import pack, unpack
from streams.versions.in_force import Versions
from tests.conftest import POLICIES

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


def publication(version: str, **changes: dict[str, str]) -> PublishedPolicy:
    policies, templates = pack(POLICIES, POLICIES / "templates")
    return PublishedPolicy(
        version=version,
        effective_at=AT,
        published_at=AT,
        author="ana",
        policies={**policies, **changes.get("policies", {})},
        templates={**templates, **changes.get("templates", {})},
    )


@pytest.fixture
def versions(tmp_path: Path) -> Versions:
    first = load_directory(POLICIES)
    return Versions(
        first.model_copy(update={"version": "pol-aaaaaaaaaaaa"}),
        Templates(POLICIES / "templates"),
        tmp_path,
        Metrics(),
    )


def test_a_set_that_passes_is_in_force_from_its_instant(versions: Versions) -> None:
    good = publication(load_directory(POLICIES).version)

    assert versions.apply(good)
    assert versions.at(AT).version == good.version
    assert versions.at(datetime(2026, 11, 30, tzinfo=UTC)).version == "pol-aaaaaaaaaaaa"
    assert versions.templates_for(good.version).directory == versions.root / good.version / (
        "templates"
    )


def test_a_set_whose_template_does_not_compile_is_refused_and_the_old_one_stays(
    versions: Versions,
) -> None:
    broken = publication(
        "pol-bbbbbbbbbbbb", templates={"fraud-alert/sms.en.j2": "Card {{ data.reason"}
    )

    assert not versions.apply(broken)
    assert versions.at(AT).version == "pol-aaaaaaaaaaaa"
    assert "does not render" in versions.refused["pol-bbbbbbbbbbbb"]


def test_a_set_that_is_not_the_version_it_claims_is_refused(versions: Versions) -> None:
    assert not versions.apply(publication("pol-cccccccccccc"))
    assert "different Clarion versions" in versions.refused["pol-cccccccccccc"]
    assert versions.at(AT).version == "pol-aaaaaaaaaaaa"


def test_a_file_name_that_leaves_its_folder_is_refused(tmp_path: Path, versions: Versions) -> None:
    escaping = publication("pol-dddddddddddd", templates={"../../outside.j2": "x"})

    assert not versions.apply(escaping)
    assert "leaves its folder" in versions.refused["pol-dddddddddddd"]
    assert not (tmp_path.parent / "outside.j2").exists()
    with pytest.raises(ValueError):
        unpack(publication("pol-dddddddddddd", policies={"/etc/x.yaml": "x"}), tmp_path)


def test_a_publication_survives_the_wire_as_it_was() -> None:
    good = publication("pol-eeeeeeeeeeee")
    encoded = good.encode()

    assert PublishedPolicy.decode(encoded) == good
    assert len(encoded) < len(good.model_dump_json()) / 4  # compressed: far under 1 MB
    with pytest.raises(ValueError):
        PublishedPolicy.model_validate({**good.model_dump(), "version": "../etc"})


async def test_the_follower_starts_again_after_a_failure_and_goes_on_from_its_offset(
    monkeypatch: pytest.MonkeyPatch, versions: Versions
) -> None:
    """A broker error while following loses no publication: the follower reads again from
    the first offset it has not applied, a second later (here: at once)."""
    monkeypatch.setattr(follower, "RETRY_S", 0.0)
    good = publication(load_directory(POLICIES).version)
    asked: list[int] = []
    worker = follower.Follower(Settings(), versions, start=3)

    async def follow(settings: Settings, start: int) -> AsyncIterator[catalog.Entry]:
        asked.append(start)
        if len(asked) == 1:
            raise KafkaConnectionError("broker away")
        yield catalog.Entry(start, good)
        await worker.stop()

    monkeypatch.setattr(catalog, "follow", follow)
    await asyncio.wait_for(worker._run(), timeout=5)

    assert asked == [3, 3]
    assert worker.position == 4
    assert versions.at(AT).version == good.version


def test_a_record_that_is_not_a_publication_is_skipped() -> None:
    assert catalog._entry(7, b"not gzip") is None
    assert catalog._entry(8, None) is None


async def test_a_set_too_large_for_one_record_is_refused_before_the_broker_is_asked() -> None:
    noise = os.urandom(60_000).hex()  # 120 kB that gzip cannot shrink under 64 KiB
    large = publication("pol-ffffffffffff", templates={"fraud-alert/email.en.html.j2": noise})
    settings = Settings(
        producer_max_request_bytes=64 * 1024,
        dead_letter_max_bytes=16 * 1024,
        kafka_bootstrap="127.0.0.1:9",
    )

    with pytest.raises(catalog.PublishRefused, match="over what a record may be"):
        await catalog.publish(settings, large)
