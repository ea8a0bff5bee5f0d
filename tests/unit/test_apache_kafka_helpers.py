"""The test harness's own rules for starting Apache Kafka (issue 20)."""

from __future__ import annotations

import uuid

import pytest

from tests.apache_kafka import cluster_id


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" in URL-safe base64: the first draw would be read as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x08" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))

    assert cluster_id() == "CAgICAgICAgICAgICAgICA"
