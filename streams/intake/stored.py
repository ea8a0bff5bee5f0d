"""The `customers` table's value: one customer's state as compact JSON bytes.

The table holds bytes (Faust's raw serializer), not decoded dicts. Three costs
fell with that, each measured in docs/performance.md: Faust no longer runs a
JSON encoder over a dict the state was first dumped into (pydantic writes the
bytes in one pass); the memory store keeps about 2 kB a customer instead of
the dicts' 11.5 kB; and recovery no longer decodes every changelog record.

The value is still one JSON object, so a person or a tool can read the
changelog: ``{"partition":P,"due":"ISO"|null,"state":{...}}``. Its head is
written in a fixed shape, so the timer index is rebuilt from the partition and
the due instant without decoding any state (`head`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from policies.state import CustomerState
from schemas.intake import field_errors

_OPEN = b'{"partition":'
_DUE = b',"due":'
_STATE = b',"state":'


@dataclass(frozen=True, slots=True)
class Head:
    partition: int
    due: str | None
    """The customer's next due instant, ISO-8601, as `datetime.isoformat` wrote it."""


def encode(partition: int, due: datetime | None, state: CustomerState) -> bytes:
    when = b"null" if due is None else b'"' + due.isoformat().encode() + b'"'
    body = CustomerState.__pydantic_serializer__.to_json(state)
    return b"".join((_OPEN, str(partition).encode(), _DUE, when, _STATE, body, b"}"))


def head(value: object) -> Head | None:
    """The partition and due instant of a stored value; None when it holds no state."""
    if not isinstance(value, bytes):
        return None
    split, ends = _marks(value)
    if ends < 0:
        try:
            older = _older(value)
        except ValueError:
            return None  # unreadable: no timer to index; reading its state says why
        if older is None:
            return None
        where, due = older.get("partition"), older.get("due")
        if not isinstance(where, int) or not isinstance(due, str | None):
            return None
        return Head(where, due)
    due = value[split + len(_DUE) : ends]
    try:
        partition = int(value[len(_OPEN) : split])
    except ValueError:
        return None
    return Head(partition, None if due == b"null" else due[1:-1].decode())


def state(value: object) -> CustomerState | None:
    """The state a stored value holds; None when it holds none.

    ValueError when the value cannot be read: the input that needed it is then
    dead-lettered with the reason, and the customer is not silently started afresh.
    """
    if not isinstance(value, bytes):
        return None
    _, ends = _marks(value)
    if ends < 0:
        older = _older(value)
        return None if older is None else CustomerState.model_validate(older["state"])
    return CustomerState.model_validate_json(value[ends + len(_STATE) : -1])


def changelog_topic(app_id: str) -> str:
    """The `customers` table's changelog, as Faust names it (the app id is its prefix)."""
    return f"{app_id}-customers-changelog"


def changelog_keys(customer: str) -> set[bytes]:
    """A customer's key on the changelog: Faust's JSON encoding of the id (raw, from tools)."""
    return {customer.encode(), json.dumps(customer).encode()}


def unreadable(value: object) -> str | None:
    """Why a stored value's state does not read, in words; None when it reads (or is empty)."""
    try:
        state(value)
    except ValidationError as exc:
        return field_errors(exc)
    except RecursionError:
        return "nested too deep to read"
    except ValueError as exc:
        return str(exc)
    return None


def decoded(value: bytes) -> object:
    """The ``state`` part of a stored value as JSON decodes it, with no model read:
    what `policies.repair.salvage` works from when `state` fails. ValueError when even
    that fails (not JSON, or nested too deep for the decoder)."""
    try:
        found = json.loads(value)
    except RecursionError:
        raise ValueError("a stored customer value nested too deep to decode") from None
    except ValueError as exc:
        raise ValueError(f"a stored customer value that is not JSON: {exc}") from None
    if not isinstance(found, dict) or "state" not in found:
        raise ValueError("a stored customer value without a state")
    return found["state"]


def _marks(value: bytes) -> tuple[int, int]:
    """Where `"due"` and `"state"` begin in a value `encode` wrote; -1 in any other."""
    split = value.find(_DUE, len(_OPEN)) if value.startswith(_OPEN) else -1
    return split, value.find(_STATE, split) if split >= 0 else -1


def _older(value: bytes) -> dict[str, Any] | None:
    """A value in another layout: what Faust's JSON serializer wrote before this codec
    (``{"partition": 0, "due": ...}``, with spaces), so an existing changelog still reads."""
    try:
        found = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"a stored customer value that is not JSON: {exc}") from None
    return found if isinstance(found, dict) and found.get("state") else None
