"""A dead letter always fits: whole up to the limit, else a preview, the length and the hash."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.dead_letters import KEY_BYTES, PREVIEW_BYTES, REASON_CHARS, DeadLetter
from streams.runtime.settings import DEAD_LETTER_OVERHEAD, Settings, SettingsError

AT = datetime(2026, 12, 4, tzinfo=UTC)


def letter(
    value: bytes, key: bytes | None = b"C-1", reason: str = "why", limit: int = 1024
) -> DeadLetter:
    return DeadLetter.of(
        code="too_large",
        reason=reason,
        topic="clarion.account-events",
        partition=3,
        offset=41,
        key=key,
        value=value,
        received_at=AT,
        whole_max_bytes=limit,
    )


def test_a_small_input_is_kept_whole() -> None:
    kept = letter(b"x" * 1024)
    assert not kept.truncated and kept.original_value() == b"x" * 1024
    assert kept.original_key() == b"C-1" and kept.value_bytes == 1024
    assert kept.value_sha256 == hashlib.sha256(b"x" * 1024).hexdigest()


def test_a_large_input_is_kept_by_pointer() -> None:
    value = bytes(range(256)) * 40_000  # 10 MB
    kept = letter(value, limit=256 * 1024)
    assert kept.truncated and kept.value_bytes == len(value)
    assert base64.b64decode(kept.value_b64) == value[:PREVIEW_BYTES]
    assert (kept.topic, kept.partition, kept.offset) == ("clarion.account-events", 3, 41)
    assert kept.matches(value) and not kept.matches(value[:-1])
    with pytest.raises(ValueError, match="truncated"):
        kept.original_value()


def test_a_long_key_and_a_long_reason_are_cut() -> None:
    kept = letter(b"{}", key=b"k" * 100_000, reason="r" * 50_000)
    assert kept.truncated and kept.kept_key() == b"k" * KEY_BYTES
    assert len(kept.reason) == REASON_CHARS and kept.reason.endswith("\u2026")


@given(
    size=st.integers(min_value=0, max_value=2_000_000),
    key_size=st.integers(min_value=0, max_value=50_000),
    reason=st.text(max_size=5000),
    limit=st.integers(min_value=1024, max_value=700_000),
)
def test_every_letter_fits_the_request_the_settings_allow(
    size: int, key_size: int, reason: str, limit: int
) -> None:
    """Whatever came in, the letter is no larger than 4/3 of the limit plus the overhead
    the settings reserve, which they check fits the producer's request."""
    kept = letter(b"\xff" * size, key=b"\x00" * key_size, reason=reason, limit=limit)
    encoded = kept.model_dump_json().encode() + (kept.kept_key() or b"")
    assert len(encoded) <= limit * 4 // 3 + DEAD_LETTER_OVERHEAD


def test_the_settings_refuse_a_dead_letter_limit_the_producer_cannot_send() -> None:
    with pytest.raises(SettingsError, match="CLARION_DEAD_LETTER_MAX_BYTES"):
        Settings.from_env(dead_letter_max_bytes=900_000, producer_max_request_bytes=1_000_000)
    assert Settings.from_env(dead_letter_max_bytes=700_000).producer_max_request_bytes == 1_000_000
