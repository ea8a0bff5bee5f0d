"""Turning a raw Kafka message into an `Event`, or into a reason a person can act on.

The reasons are written for the producer's on-call engineer reading
`dead-letters`: what was wrong, where, and what a right value looks like.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.dead_letters import RejectCode
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event, event_from_dict

DEFAULT_MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    reason: str


def check_event(
    raw: bytes, key: bytes | None, *, max_bytes: int = DEFAULT_MAX_BYTES, keyed: bool = True
) -> Event | Rejection:
    """Validate one message from `account-events` (or any topic carrying envelopes).

    `keyed=False` is for a file of events (the simulator), where there is no key to check.
    """
    if len(raw) > max_bytes:
        return Rejection("too_large", f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        return Rejection("invalid_json", f"not UTF-8 text: {exc.reason} at byte {exc.start}")
    except json.JSONDecodeError as exc:
        return Rejection(
            "invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    if not isinstance(obj, dict):
        return Rejection(
            "not_an_object", f"an event is a JSON object, got a JSON {_json_kind(obj)}"
        )

    early = _check_type_and_version(obj)
    if early is not None:
        return early
    try:
        event = event_from_dict(obj)
    except ValidationError as exc:
        return _explain(exc)

    expected = event.customer_id
    if not keyed:
        return event
    if key is None:
        return Rejection(
            "key_mismatch", f"message has no key; producers must key by customer_id ({expected!r})"
        )
    got = key.decode("utf-8", errors="replace")
    if got != expected:
        return Rejection(
            "key_mismatch",
            f"message key {got!r} does not match customer_id {expected!r}; "
            "producers must key by customer_id",
        )
    return event


def _check_type_and_version(obj: dict[str, Any]) -> Rejection | None:
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return Rejection(
            "unsupported_schema_version",
            f"schema_version {version} is newer than this worker understands "
            f"(up to {SCHEMA_VERSION}); upgrade the workers before the producers",
        )
    if "type" not in obj:
        return Rejection("invalid_field", "type: field required")
    kind = obj["type"]
    if not isinstance(kind, str):
        return Rejection("invalid_field", f"type: must be a string, got a JSON {_json_kind(kind)}")
    if kind not in EVENT_TYPES:
        close = difflib.get_close_matches(kind, sorted(EVENT_TYPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return Rejection("unknown_type", f"unknown event type {kind!r}{hint}")
    return None


def _explain(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False)
    # The first element of each location is the union's tag (the event type): drop it.
    parts = []
    code: RejectCode = "invalid_field"
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "(event)"
        if err["type"] == "timezone_aware":
            code = "naive_timestamp"
            parts.append(
                f"{loc}: {err['input']!r} has no time zone; "
                "send UTC with a Z (2026-11-20T09:00:00Z) or an offset (+01:00)"
            )
        elif err["type"] == "missing":
            parts.append(f"{loc}: field required")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg} (got {_short(err.get('input'))})")
    return Rejection(code, "; ".join(parts))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), "value"
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
