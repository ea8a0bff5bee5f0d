"""What a careless or hostile producer sends is refused at the door with a code and a
sentence it can act on; nothing accepted here fails to read back later (issue 26)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.state import CustomerState
from schemas.events import Event
from schemas.intake import MAX_DEPTH, Rejection, check_event
from tests import samples

KEY = b"C-1"


def refused(raw: bytes, key: bytes | None = KEY) -> Rejection:
    checked = check_event(raw, key)
    assert isinstance(checked, Rejection), checked
    assert_for_producers(checked.reason)
    return checked


def assert_for_producers(reason: str) -> None:
    """No Python internals: no exception class, file name or interpreter advice."""
    for internal in ("Error", ".py", "sys.", "Traceback", "decoder", "recursion"):
        assert internal not in reason, reason


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def with_data(type_name: str, **data: object) -> bytes:
    event = samples.event(type_name)
    event["data"].update(data)
    return json.dumps(event).encode()


def test_json_nested_ten_thousand_deep() -> None:
    assert refused(b"[" * 10_000 + b"]" * 10_000).code == "too_deep"
    assert refused(b'{"a":' * 10_000 + b"1" + b"}" * 10_000).code == "too_deep"


@pytest.mark.parametrize("depth", [MAX_DEPTH, 250, 400])
def test_free_form_data_nested_deep(depth: int) -> None:
    """The profile nested 250 deep was stored, and the customer could never be read again."""
    letter = refused(with_data("customer.profile.updated", extra=nested(depth)))
    assert letter.code == "too_deep" and "data.extra" in letter.reason


def test_what_is_accepted_reads_back_from_the_state() -> None:
    raw = with_data("customer.profile.updated", extra=nested(MAX_DEPTH - 4))
    event = check_event(raw, KEY)
    assert isinstance(event, Event)
    state = CustomerState(customer_id="C-1", profile=event.data)  # type: ignore[arg-type]
    assert CustomerState.model_validate_json(state.model_dump_json()) == state


def test_numbers_out_of_range() -> None:
    digits = with_data("transaction.large").replace(
        b'"data": {', b'"data": {"n": ' + b"9" * 5000 + b", "
    )
    assert refused(digits).code == "number_out_of_range"
    raw = with_data("transaction.large").replace(b'"data": {', b'"data": {"big": 1e999, ')
    assert refused(raw).code == "number_out_of_range"
    raw = with_data("transaction.large").replace(b'"data": {', b'"data": {"nan": NaN, ')
    assert refused(raw).code == "number_out_of_range"


def test_a_lone_surrogate_and_control_characters() -> None:
    raw = with_data("transaction.large").replace(b'"merchant": "', b'"merchant": "Shop\\ud800')
    letter = refused(raw)
    assert letter.code == "invalid_text" and "data.merchant" in letter.reason
    assert "U+D800" in letter.reason
    assert refused(with_data("transaction.large", merchant="a\x00b")).code == "invalid_text"
    assert refused(with_data("transaction.large", merchant="\u202egnp.exe")).code == (
        "invalid_text"
    )
    ok = check_event(with_data("transaction.large", merchant="Café\tZürich 東京"), KEY)
    assert isinstance(ok, Event)


@pytest.mark.parametrize("customer", ["C-1\x00", "C-\u202e1", "C-1\U0001f600", " C-1", "C/1", ""])
def test_customer_ids_follow_the_apis_rule(customer: str) -> None:
    raw = json.dumps(samples.event("transaction.large", customer_id=customer)).encode()
    assert refused(raw, customer.encode()).code in ("invalid_field", "invalid_text")


@pytest.mark.parametrize(
    "occurred_at",
    [1764000000, 1764000000.5, True, "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"],
)
def test_occurred_at_is_an_iso_string_in_range(occurred_at: object) -> None:
    raw = json.dumps(samples.event("transaction.large", occurred_at=occurred_at)).encode()
    letter = refused(raw)
    assert letter.code == "invalid_field" and letter.reason.startswith("occurred_at: ")


def test_utf16_and_a_byte_order_mark() -> None:
    text = json.dumps(samples.event("transaction.large"))
    assert refused(text.encode("utf-16")).code == "invalid_json"
    assert refused(b"\xef\xbb\xbf" + text.encode()).code == "invalid_json"
    assert "byte-order mark" in refused(b"\xef\xbb\xbf" + text.encode()).reason


def test_a_text_too_long() -> None:
    assert refused(with_data("transaction.large", merchant="M" * 10_000)).code == "too_large"


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_no_bytes_make_intake_raise(raw: bytes) -> None:
    checked = check_event(raw, KEY)
    if isinstance(checked, Rejection):
        assert_for_producers(checked.reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values)
def test_no_json_in_data_makes_intake_raise_or_stores_what_cannot_be_read(data: object) -> None:
    event = samples.event("customer.profile.updated")
    event["data"]["extra"] = data
    try:
        raw = json.dumps(event, allow_nan=True).encode("utf-8", errors="surrogatepass")
    except (ValueError, OverflowError):
        return
    checked = check_event(raw, KEY)
    if isinstance(checked, Rejection):
        assert_for_producers(checked.reason)
        return
    state = CustomerState(customer_id="C-1", profile=checked.data)  # type: ignore[arg-type]
    assert CustomerState.model_validate_json(state.model_dump_json()) == state
