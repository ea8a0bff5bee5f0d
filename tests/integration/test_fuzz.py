"""`make fuzz`, smaller, in `make test`: nothing lost, no crash, no phantom ledger row,
no contact leaked, no 5xx, for a seeded mix of about 1,000 inputs (tests/fuzz.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker
from tests import fuzz

pytestmark = pytest.mark.integration


def test_a_seeded_mix_of_hostile_input_loses_and_leaks_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    acc = fuzz.run(tmp_path, broker.bootstrap, inputs=1000, http=100, seed=7)
    table = acc.table()
    assert acc.produced["hostile"] > 300 and acc.produced["valid"] > 500, table
    assert len(acc.dead_lettered) >= 10, table  # most kinds of refusal happened
    assert acc.lost == 0, table
    assert acc.wrongly_refused == [] and acc.wrongly_applied == [], table
    assert acc.agent_crashes == 0, table
    assert acc.phantom_rows == 0, table
    assert acc.contacts_leaked == [], table
    assert acc.http_5xx == [] and sum(acc.http.values()) == 100, table
    assert acc.clean()
