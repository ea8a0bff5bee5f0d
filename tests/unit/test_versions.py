"""The version in force at an instant (issue 22): a pure function of the published versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.model import PolicySet
from policies.versions import PolicyVersions

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def named(policy: PolicySet, version: str) -> PolicySet:
    return policy.model_copy(update={"version": version})


def test_the_first_set_is_in_force_until_a_published_one_takes_effect(policy: PolicySet) -> None:
    versions = PolicyVersions(named(policy, "v1"))
    versions.add(T0, named(policy, "v2"))

    assert versions.at(T0 - timedelta(microseconds=1)).version == "v1"
    assert versions.at(T0).version == "v2"
    assert versions.at(datetime(1970, 1, 1, tzinfo=UTC)).version == "v1"
    assert versions.latest.version == "v2"


def test_a_rollback_is_the_old_set_in_force_again(policy: PolicySet) -> None:
    versions = PolicyVersions(named(policy, "v1"))
    versions.add(T0, named(policy, "v2"))
    versions.add(T0 + timedelta(hours=1), named(policy, "v1"))

    assert [versions.at(T0 + timedelta(minutes=m)).version for m in (-1, 0, 59, 60)] == [
        "v1",
        "v2",
        "v2",
        "v1",
    ]
    assert versions.known("v2") is not None
    assert versions.known("v3") is None


def test_an_instant_without_its_offset_is_refused(policy: PolicySet) -> None:
    with pytest.raises(ValueError, match="offset"):
        PolicyVersions(policy).add(datetime(2026, 12, 1), policy)


@given(
    st.lists(st.integers(min_value=-50, max_value=50), max_size=12),
    st.integers(min_value=-60, max_value=60),
)
def test_in_force_is_the_last_published_at_or_before_the_instant(
    offsets: list[int], probe: int
) -> None:
    """Whatever order the versions arrive in: the latest effective at or before `now`, and
    among equal instants the one published last."""
    base = PolicySet(
        version="v-start", categories={}, contact_windows={}, frequency_caps=[], escalations={}
    )
    versions = PolicyVersions(base)
    for i, minutes in enumerate(offsets):
        versions.add(T0 + timedelta(minutes=minutes), named(base, f"v{i}"))

    now = T0 + timedelta(minutes=probe)
    eligible = [(m, i) for i, m in enumerate(offsets) if m <= probe]
    expected = f"v{max(eligible)[1]}" if eligible else "v-start"
    assert versions.at(now).version == expected
