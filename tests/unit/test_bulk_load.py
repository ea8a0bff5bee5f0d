"""A table store's bulk read of its changelog, when it cannot read (streams/kafka/bulk_load.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faust.types import TP
from structlog.testing import capture_logs

from streams.kafka.broker import free_port
from streams.kafka.bulk_load import BulkLoadedRocksDBStore, BulkLoadedStore
from streams.kafka.transport import ClarionApp


def table_on(store: str, tmp_path: Path) -> tuple[ClarionApp, object]:
    app = ClarionApp(
        "bulk-test",
        broker=f"kafka://127.0.0.1:{free_port()}",  # nothing listens there
        store=store,
        datadir=str(tmp_path),
        autodiscover=False,
    )
    return app, app.Table("customers", partitions=1, value_type=bytes)


@pytest.mark.parametrize("url", ["memory://", "rocksdb://"])
def test_a_failed_bulk_read_leaves_the_partition_to_fausts_own_replay(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if url == "rocksdb://":
        pytest.importorskip("rocksdict")
    app, table = table_on(url, tmp_path)
    store = table.data  # type: ignore[attr-defined]
    assert isinstance(store, BulkLoadedStore | BulkLoadedRocksDBStore)
    tp = TP(table.changelog_topic.get_topic_name(), 0)  # type: ignore[attr-defined]
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {tp})
    with capture_logs() as logs:
        asyncio.run(store.on_rebalance({tp}, set(), {tp}))
    assert store.persisted_offset(tp) is None  # so Faust replays it from the start
    failed = [e for e in logs if e["event"] == "table.read_in_bulk_failed"]
    assert failed and "Unable to bootstrap" in failed[0]["error"]
