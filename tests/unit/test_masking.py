"""No contact point appears raw in a log line or a dead letter's reason (issue 26)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from schemas.intake import Rejection, check_event
from streams.runtime.logging import mask, mask_contact_points
from tests import samples

e164 = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.integers(min_value=1, max_value=9),
    st.text(alphabet="0123456789", min_size=6, max_size=14),
)
# `*` is what masking writes: a one-character local part `*` would read as masked already.
word = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Z", "C"), blacklist_characters="@\"'<>()[],;:\\*"
    ),
    min_size=1,
    max_size=12,
)
email = st.builds(lambda local, domain, tld: f"{local}@{domain}.{tld}", word, word, word)
around = st.sampled_from(["{}", "to {}", "({})", '"{}"', "{},x", "x {} y", "<{}>", "[{}]"])


@given(e164, around)
def test_every_e164_length_is_masked(number: str, shape: str) -> None:
    text = mask(shape.format(number))
    assert number not in text and number[:-2] not in text


@given(email, around)
def test_every_address_with_an_at_is_masked(address: str, shape: str) -> None:
    local = address.split("@")[0]
    text = mask(shape.format(address))
    assert address not in text
    if len(local) > 1:
        assert local + "@" not in text


@given(st.lists(e164 | email, min_size=1, max_size=4))
def test_the_log_processor_masks_nested_values(contacts: list[str]) -> None:
    event = mask_contact_points(None, "info", {"event": "x", "n": {"to": contacts}, "v": contacts})
    line = json.dumps(event, ensure_ascii=False)
    assert not [c for c in contacts if c in line]


def test_the_issues_gaps() -> None:
    assert "2902345" not in mask("sandbox.sent to=+2902345")
    assert "josé" not in mask("josé@exámple.com")
    assert mask("josé@exámple.com") == "j***@exámple.com"


@given(st.text(alphabet="0123456789", min_size=7, max_size=15))
def test_a_rejected_number_is_not_echoed_in_the_reason(digits: str) -> None:
    event = samples.event("customer.profile.updated")
    event["data"]["phones"] = [{"number": digits}]
    checked = check_event(json.dumps(event).encode(), b"C-1")
    assert isinstance(checked, Rejection)
    assert digits not in checked.reason


def test_a_rejected_address_is_not_echoed_in_the_reason() -> None:
    event = samples.event("customer.profile.updated")
    event["data"]["emails"] = [{"address": "not-an-address"}]
    checked = check_event(json.dumps(event).encode(), b"C-1")
    assert isinstance(checked, Rejection) and "not-an-address" not in checked.reason
