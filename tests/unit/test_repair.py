"""Repairing a state that does not read (issue 26): what a repair may leave out, and
what it never may; and the worker's checks before it applies one."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.repair import reads_back, salvage
from policies.state import CustomerState
from schemas.examples import EXAMPLE_DATA
from schemas.repairs import StateRepair
from streams.intake import repairs, stored

AT = "2026-11-20T14:00:00Z"


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"x": value}
    return value


def a_state(**parts: Any) -> dict[str, Any]:
    """A readable state as JSON, with a consent, a cease, a contact and a case."""
    state = CustomerState.model_validate(
        {
            "customer_id": "C-1",
            "profile": EXAMPLE_DATA["customer.profile.updated"],
            "consents": {
                "sms:+13125550101": {
                    "channel": "sms",
                    "address": "+13125550101",
                    "status": "revoked",
                    "source": "STOP",
                    "at": AT,
                }
            },
            "ceases": [{"at": AT, "account_id": "A-9"}],
            "contacts": [{"at": AT, "channel": "voice", "category": "collections"}],
            "conversations": [{"at": AT}],
            "cases": {
                "case-1": {
                    "case_id": "case-1",
                    "escalation": "missed-payment",  # as deploy/policies names it
                    "ladder": "standard",
                    "account_id": "A-2",
                    "opened_at": AT,
                    "cause_event_id": "evt-1",
                    "origin": AT,
                    "pending": [{"step": 1, "due": "2026-11-21T14:00:00Z"}],
                    "data": {"amount_due": "125.40"},
                }
            },
        }
    ).model_dump(mode="json")
    for path, value in parts.items():
        *outer, last = path.split("__")
        target = state
        for key in outer:
            target = target[key]
        target[last] = value
    return state


def stored_value(state: dict[str, Any]) -> bytes:
    return b'{"partition":0,"due":null,"state":' + json.dumps(state).encode() + b"}"


def test_a_deep_profile_field_is_left_out_and_everything_else_kept() -> None:
    """The issue's poisoned customer: a profile field nested 250 deep."""
    poisoned = a_state(profile__notes=deep(250))
    with pytest.raises(ValueError):
        stored.state(stored_value(poisoned))  # what intake refuses as state_unreadable
    found = salvage("C-1", stored.decoded(stored_value(poisoned)))
    assert found.state is not None and not found.refused
    assert [d.split(":")[0] for d in found.dropped] == ["profile"]
    assert "'notes'" in found.dropped[0] and "deeper than 16" in found.dropped[0]
    kept = found.state.model_dump(mode="json")
    assert kept == {**a_state(), "profile": {**a_state()["profile"]}}
    assert reads_back(found.state) is None
    assert stored.state(stored.encode(0, found.state.due, found.state)) == found.state


def test_case_data_goes_first_and_a_case_that_still_does_not_read_is_closed() -> None:
    bad_data = a_state()
    bad_data["cases"]["case-1"]["data"] = {"merchant": "Shop\ud800"}
    found = salvage("C-1", bad_data)
    assert found.state is not None
    assert found.state.cases["case-1"].data == {}
    assert found.dropped == (
        "case 'case-1': its trigger's data (data.merchant: character U+D800 at 4 is not allowed "
        "(control characters, lone surrogates and direction overrides are refused))",
    )
    broken = a_state()
    broken["cases"]["case-1"]["pending"] = [{"step": "one"}]
    found = salvage("C-1", broken)
    assert found.state is not None and found.state.cases == {}
    assert found.dropped[0].startswith("case 'case-1': closed, it does not read")


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("consents", {"sms:+13125550101": {"channel": "sms", "status": "revoked"}}),
        ("ceases", [{"at": "yesterday"}]),
        ("contacts", [{"at": AT, "channel": "pigeon", "category": "collections"}]),
        ("conversations", "many"),
        ("profile", {"phones": [{"number": "not a number"}]}),
        ("preferences", {"channels": {"sms": "maybe"}}),
    ],
)
def test_nothing_a_guard_reads_is_ever_dropped(part: str, value: object) -> None:
    """Losing an opt-out, a cease, a counted contact or a contact point's own fields
    could contact someone who said stop: no repair is proposed, the operator writes it."""
    found = salvage("C-1", {**a_state(), part: value})
    assert found.state is None
    assert found.refused and all(why.startswith(part) for why in found.refused)


def test_what_is_not_a_state_is_refused_with_a_reason() -> None:
    assert salvage("C-1", [1, 2]).refused == ("the stored state is not a JSON object",)
    assert salvage("C-1", {**a_state(), "cases": []}).refused == (
        "cases: not an object of cases by id",
    )
    found = salvage("C-1", {**a_state(), "customer_id": "C-2", "colour": "blue"})
    assert found.state is not None and found.state.customer_id == "C-1"
    assert found.dropped == ("colour: not a part of a customer's state",)
    with pytest.raises(ValueError, match="too deep"):
        stored.decoded(b'{"state":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


_junk = st.recursive(
    st.none() | st.booleans() | st.text(max_size=5) | st.integers(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    profile_extra=st.dictionaries(st.sampled_from(["notes", "tags"]), _junk, max_size=2),
    depth=st.integers(min_value=0, max_value=300),
    case_data=_junk,
    surrogate=st.booleans(),
)
def test_a_repair_keeps_every_guard_record_and_reads_back(
    profile_extra: dict[str, Any], depth: int, case_data: Any, surrogate: bool
) -> None:
    """Whatever free-form data poisoned the state, the proposal keeps the consents, the
    ceases, the contacts and the conversations exactly, and it reads back."""
    state = a_state()
    state["profile"].update(profile_extra, nested=deep(depth))
    state["cases"]["case-1"]["data"] = {"v": case_data, "m": "\ud800" if surrogate else "ok"}
    found = salvage("C-1", state)
    assert found.state is not None, found.refused
    kept = found.state.model_dump(mode="json")
    for part in ("consents", "ceases", "contacts", "conversations", "preferences"):
        assert kept[part] == a_state()[part]
    for field in ("phones", "emails", "time_zones"):
        assert kept["profile"][field] == a_state()["profile"][field]
    assert reads_back(found.state) is None


def _repair(value: bytes, state: dict[str, Any], **changes: Any) -> bytes:
    request = StateRepair(
        repair_id="repair-1",
        customer_id="C-1",
        requested_at=datetime(2026, 12, 4, tzinfo=UTC),
        operator="ops",
        reason="ticket 7",
        replaces_sha256=hashlib.sha256(value).hexdigest(),
        state=state,
        dropped=["profile: its extra fields 'notes'"],
    )
    return request.model_copy(update=changes).model_dump_json().encode()


def test_the_worker_applies_a_repair_only_over_the_unreadable_value_it_was_made_for() -> None:
    poisoned = stored_value(a_state(profile__notes=deep(250)))
    good = a_state()
    accepted = repairs.check(_repair(poisoned, good), b"C-1", poisoned)
    assert isinstance(accepted, repairs.Accepted)
    assert accepted.state == CustomerState.model_validate(good)
    row = repairs.decision(accepted.repair, "v1")
    assert (row.action, row.reason, row.detail) == ("repaired", "state_repaired", "ops: ticket 7")
    assert row.extra["dropped"] == ["profile: its extra fields 'notes'"]

    readable = stored.encode(0, None, accepted.state)
    refusals = {
        "reads": repairs.check(_repair(readable, good), b"C-1", readable),
        "nothing stored": repairs.check(_repair(poisoned, good), b"C-1", None),
        "another value": repairs.check(_repair(b"older", good), b"C-1", poisoned),
        "key": repairs.check(_repair(poisoned, good), b"C-2", poisoned),
        "other customer": repairs.check(
            _repair(poisoned, {**good, "customer_id": "C-2"}), b"C-1", poisoned
        ),
        "still poisoned": repairs.check(
            _repair(poisoned, a_state(profile__notes=deep(250))), b"C-1", poisoned
        ),
        "not a repair": repairs.check(b'{"repair_id": 1}', b"C-1", poisoned),
    }
    assert all(isinstance(why, str) for why in refusals.values()), refusals
    assert "has no unreadable state" in str(refusals["reads"])
    assert "has no unreadable state" in str(refusals["nothing stored"])
    assert "not the one this repair was made for" in str(refusals["another value"])
    assert "would not read back" in str(refusals["still poisoned"])
    assert str(refusals["not a repair"]).startswith("not a state repair: ")


def test_a_state_written_by_hand_is_refused_with_the_files_reason(tmp_path: Path) -> None:
    """`clarion state repair --from FILE`: a file that is not JSON, not a state, another
    customer's, or still unreadable is refused with a reason that names the file."""
    from streams.cli.state import Stored, proposal

    found = Stored("C-1", 0, stored_value(a_state(profile__notes=deep(250))))
    cases = {
        "bad.json": ("{not json", "bad.json: "),
        "shape.json": (json.dumps({"customer_id": "C-1", "ceases": "x"}), "shape.json: ceases"),
        "other.json": (json.dumps({**a_state(), "customer_id": "C-2"}), "the state of 'C-2'"),
    }
    for name, (text, said) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        plan = proposal(found, path)
        assert plan.state is None and said in plan.refused[0], plan.refused
    whole = tmp_path / "whole.json"  # the stored value as `show --raw` prints it
    whole.write_text(json.dumps({"partition": 0, "due": None, "state": a_state()}))
    assert proposal(found, whole).state == CustomerState.model_validate(a_state())
    assert proposal(found, tmp_path / "missing.json").refused[0].startswith(str(tmp_path))
