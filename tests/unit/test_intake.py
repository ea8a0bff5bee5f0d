"""Every kind of bad input gets its own code and a reason a person can act on."""

from __future__ import annotations

import json

import pytest

from schemas.events import Event
from schemas.intake import Rejection, check_event
from tests import samples

KEY = b"C-1"


def rejected(raw: bytes, key: bytes | None = KEY, **kw: int) -> Rejection:
    result = check_event(raw, key, **kw)
    assert isinstance(result, Rejection), result
    return result


def test_a_valid_event_is_accepted() -> None:
    assert isinstance(check_event(samples.raw("payment.missed"), KEY), Event)


def test_invalid_json() -> None:
    r = rejected(b'{"event_id": "e1", ')
    assert r.code == "invalid_json"
    assert "line 1 column" in r.reason


def test_not_utf8() -> None:
    assert rejected(b"\xff\xfe\xfa").code == "invalid_json"


def test_not_an_object() -> None:
    r = rejected(b"[1, 2]")
    assert (r.code, r.reason) == ("not_an_object", "an event is a JSON object, got a JSON array")


def test_unknown_type_suggests_the_near_one() -> None:
    r = rejected(samples.raw("payment.missed", type="payment.misssed"))
    assert r.code == "unknown_type"
    assert "'payment.misssed'" in r.reason and "did you mean 'payment.missed'" in r.reason


def test_missing_field_is_named() -> None:
    obj = samples.event("payment.missed")
    del obj["data"]["due_date"]
    r = rejected(json.dumps(obj).encode())
    assert r.code == "invalid_field"
    assert r.reason == "data.due_date: field required"


def test_wrong_type_is_named_with_what_was_sent() -> None:
    obj = samples.event("payment.missed")
    obj["data"]["days_past_due"] = "five"
    r = rejected(json.dumps(obj).encode())
    assert r.code == "invalid_field"
    assert r.reason.startswith("data.days_past_due:") and '"five"' in r.reason


def test_naive_timestamp() -> None:
    r = rejected(samples.raw("payment.missed", occurred_at="2026-11-20T14:00:00"))
    assert r.code == "naive_timestamp"
    assert "occurred_at" in r.reason and "has no time zone" in r.reason


def test_oversized_message() -> None:
    obj = samples.event("hardship.reported", data={"reason": "x" * 5000})
    r = rejected(json.dumps(obj).encode(), max_bytes=2048)
    assert r.code == "too_large"
    assert "the limit is 2048" in r.reason


def test_key_must_match_customer_id() -> None:
    r = rejected(samples.raw("payment.missed"), key=b"C-2")
    assert r.code == "key_mismatch"
    assert "'C-2'" in r.reason and "'C-1'" in r.reason


def test_a_missing_key_is_a_mismatch() -> None:
    assert rejected(samples.raw("payment.missed"), key=None).code == "key_mismatch"


def test_higher_schema_version() -> None:
    r = rejected(samples.raw("payment.missed", schema_version=2))
    assert r.code == "unsupported_schema_version"
    assert "schema_version 2" in r.reason


@pytest.mark.parametrize("field", ["event_id", "customer_id", "occurred_at", "type"])
def test_missing_envelope_fields(field: str) -> None:
    obj = samples.event("payment.received")
    del obj[field]
    r = rejected(json.dumps(obj).encode())
    assert r.code == "invalid_field"
    assert field in r.reason
