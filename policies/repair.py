"""What can be kept of a customer's stored state that no longer reads back.

A state an older version wrote, or a bug, can fail to read: a profile field
nested too deep for the JSON reader, a record in a shape the model no longer
takes. Intake then refuses that customer's inputs (`state_unreadable`), and an
operator repairs the state (`clarion state repair`). This module proposes the
repair, part by part, so the operator sees exactly what would be left out.

What it may leave out is bounded by what leaving it out can cost. Free-form
data (a profile's or a preference's extra fields, a case's trigger data) is
only ever shown in messages, so it goes. A case that does not read is closed
(listed, so the ledger says so). But the records a guard reads (consents,
cease-communication requests, the contacts the caps count, conversations) and
the profile's and preferences' own fields are never dropped: losing one could
contact someone who said stop, or once too often. When one of those does not
read, nothing is proposed, and the operator writes the state by hand.

Pure: the stored value comes in decoded, and nothing is read or written here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from policies.state import Case, Cease, ConsentRecord, Contact, Conversation, CustomerState
from schemas.customer import Preferences, Profile
from schemas.intake import Rejection, scan

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Salvage:
    """A proposed state, what it leaves out, and what stops it from being proposed."""

    state: CustomerState | None
    """None when something a guard reads does not read (`refused` says what)."""
    dropped: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


def salvage(customer: str, stored: object) -> Salvage:
    """The state that keeps all of `stored` that reads back, or why none is proposed.

    `stored` is the ``state`` object of a stored value, as JSON decodes it.
    """
    if not isinstance(stored, dict):
        return Salvage(None, refused=("the stored state is not a JSON object",))
    found = _Parts(customer)
    for key in stored:
        if key not in CustomerState.model_fields:
            found.dropped.append(f"{key}: not a part of a customer's state")
    found.models(stored, "profile", Profile)
    found.models(stored, "preferences", Preferences)
    found.each(stored, "consents", ConsentRecord)
    found.each(stored, "contacts", Contact)
    found.each(stored, "conversations", Conversation)
    found.each(stored, "ceases", Cease)
    found.cases(stored.get("cases", {}))
    if found.refused:
        return Salvage(None, tuple(found.dropped), tuple(found.refused))
    state = CustomerState.model_validate(found.kept)
    problem = reads_back(state)
    if problem:  # each part read back alone; together they should too
        return Salvage(None, tuple(found.dropped), (f"the whole state: {problem}",))
    return Salvage(state, tuple(found.dropped))


def reads_back(state: CustomerState) -> str | None:
    """Why `state` would not survive being written as JSON and read again; None if it would."""
    return _problem(lambda: CustomerState.model_validate_json(state.model_dump_json()))


class _Parts:
    """The parts read so far: what is kept, what is left out, and what stops the salvage."""

    def __init__(self, customer: str) -> None:
        self.kept: dict[str, Any] = {"customer_id": customer}
        self.dropped: list[str] = []
        self.refused: list[str] = []

    def models(self, stored: dict[str, Any], name: str, model: type[BaseModel]) -> None:
        """An open model (profile, preferences): its extra fields may go, its own may not."""
        if name not in stored:
            return
        value = stored[name]
        problem = _check(TypeAdapter(model), value)
        if problem is None:
            self.kept[name] = value
            return
        if isinstance(value, dict):
            own = {k: v for k, v in value.items() if k in model.model_fields}
            if _check(TypeAdapter(model), own) is None:
                self.kept[name] = own
                extra = ", ".join(repr(k) for k in value if k not in own)
                self.dropped.append(f"{name}: its extra fields {extra} ({problem})")
                return
        self.refused.append(f"{name}: {problem}")

    def each(self, stored: dict[str, Any], name: str, record: type[Any]) -> None:
        """A collection a guard reads: every element must read, or none is proposed."""
        if name not in stored:
            return
        value = stored[name]
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value or []))
        if not isinstance(value, dict | list):
            self.refused.append(f"{name}: not a collection")
            return
        adapter = TypeAdapter(record)
        problems = [f"{name}[{k!r}]: {p}" for k, v in items if (p := _check(adapter, v))]
        if problems:
            self.refused += problems
        else:
            self.kept[name] = value

    def cases(self, stored: object) -> None:
        """Cases: a case's trigger data may go; a case that still does not read is closed."""
        if not isinstance(stored, dict):
            self.refused.append("cases: not an object of cases by id")
            return
        adapter = TypeAdapter(Case)
        kept: dict[str, Any] = {}
        for case_id, case in stored.items():
            problem = _check(adapter, case)
            if problem is None:
                kept[case_id] = case
                continue
            if isinstance(case, dict) and "data" in case:
                bare = {**case, "data": {}}
                if _check(adapter, bare) is None:
                    kept[case_id] = bare
                    self.dropped.append(f"case {case_id!r}: its trigger's data ({problem})")
                    continue
            self.dropped.append(f"case {case_id!r}: closed, it does not read ({problem})")
        self.kept["cases"] = kept


def _check(adapter: TypeAdapter[T], value: object) -> str | None:
    """Why `value` would not be read, written and read again as the adapter's type."""
    if (refusal := _scanned(value)) is not None:
        return refusal.reason
    return _problem(
        lambda: adapter.validate_json(adapter.dump_json(adapter.validate_python(value)))
    )


def _scanned(value: object) -> Rejection | None:
    try:
        return scan(value)
    except RecursionError:
        return Rejection("too_deep", "nested too deep to read")


def _problem(attempt: Callable[[], object]) -> str | None:
    try:
        attempt()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the value"
        return f"{where}: {first['msg']}"
    except (PydanticSerializationError, ValueError):
        return "holds a value that cannot be written as JSON"
    except RecursionError:
        return "nested too deep to read"
    return None
