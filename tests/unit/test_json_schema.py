from __future__ import annotations

from schemas.events import EVENT_DATA
from schemas.export import JSON_DIR, documents, render


def test_checked_in_json_schema_matches_the_models() -> None:
    """Fails when a model changed and `python -m schemas.export` was not run."""
    stale = []
    for name, doc in documents().items():
        path = JSON_DIR / name
        if not path.exists() or path.read_text() != render(doc):
            stale.append(name)
    assert not stale, f"run `python -m schemas.export`; stale: {stale}"


def test_every_event_type_has_a_schema() -> None:
    names = set(documents())
    assert {f"events/{t}.json" for t in EVENT_DATA} <= names
    assert "envelope.json" in names


def test_money_is_published_as_a_string() -> None:
    doc = documents()["events/payment.missed.json"]
    amount = doc["$defs"]["PaymentMissed"]["properties"]["amount_due"]
    assert amount["type"] == "string"
