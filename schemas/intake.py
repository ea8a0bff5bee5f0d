"""Turning a raw Kafka message into an `Event`, or into a reason a person can act on.

The reasons are written for the producer's on-call engineer reading
`dead-letters`: what was wrong, where, and what a right value looks like.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.dead_letters import RejectCode
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event, event_from_dict

DEFAULT_MAX_BYTES = 64 * 1024
MAX_DEPTH = 16
"""Objects and arrays nested deeper are refused (`too_deep`): the envelope is 1, its `data`
2, a profile's contacts 4. Stored state must read back, and pydantic's reader has a limit."""
MAX_TEXT_CHARS = 8192
"""A longer string (a merchant name, a reply, a key) is refused (`too_large`)."""
MAX_INTEGER_DIGITS = 15
"""Integers of more digits are refused (`number_out_of_range`): JSON readers in other
languages lose precision past 2**53, and Python refuses to read 4,300 digits."""

_FORBIDDEN_TEXT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)
"""Control characters (tab, line feed and carriage return allowed), lone surrogates (they
cannot be written as UTF-8), and the bidirectional overrides that make text read otherwise."""


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
    obj = read_within_limits(raw)
    if isinstance(obj, Rejection):
        return obj
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


class _OutOfRange(ValueError):
    pass


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _OutOfRange(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(f"{text[:20]} overflows a 64-bit float")
    return value


def _constant(text: str) -> float:
    raise _OutOfRange(f"{text} is not JSON")


def read_within_limits(raw: bytes) -> Any:
    """The parsed JSON once it is known to be within every limit (depth, numbers, text), or
    the refusal: what intake and the web bodies both take."""
    obj = read_json(raw)
    if isinstance(obj, Rejection) or _plainly_within_limits(raw):
        return obj
    return scan(obj) or obj


def read_json(raw: bytes) -> Any:
    """The parsed JSON, or a refusal a producer can act on (never an exception's text)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return Rejection("invalid_json", "starts with a byte-order mark; send UTF-8 without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            "invalid_json", f"not UTF-8 text (byte {exc.start}); send JSON encoded as UTF-8"
        )
    try:
        return json.loads(text, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except _OutOfRange as exc:
        return Rejection(
            "number_out_of_range",
            f"{exc}: numbers must be finite and integers at most {MAX_INTEGER_DIGITS} digits; "
            "send amounts as decimal strings",
        )
    except RecursionError:
        return Rejection("too_deep", f"nested deeper than {MAX_DEPTH} objects and arrays")
    except json.JSONDecodeError as exc:
        return Rejection(
            "invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )


_NOT_PLAIN = re.compile(rb"[^\x20-\x7e]|\\")
"""A byte outside printable ASCII, or a backslash (which every escape starts with)."""


def _plainly_within_limits(raw: bytes) -> bool:
    """Whether `scan` could find nothing, seen from the bytes alone (most events): printable
    ASCII without escapes holds no forbidden character, no string longer than the whole,
    and no deeper nesting than it has brackets. Saves the walk, two thirds of intake's
    checking cost."""
    return (
        len(raw) <= MAX_TEXT_CHARS
        and raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH
        and _NOT_PLAIN.search(raw) is None
    )


def scan(obj: Any) -> Rejection | None:
    """Depth, text length and characters of every value and key, before any model reads it.

    Free-form fields (`data` keeps unknown fields) are stored with the customer's state,
    so what is accepted here must read back later."""
    todo: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while todo:
        value, depth, where = todo.pop()
        if isinstance(value, str):
            problem = _text(value, where)
            if problem is not None:
                return problem
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            return Rejection(
                "too_deep", f"{where or '(event)'}: nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(value, list):
            todo += [(item, depth + 1, f"{where}[{n}]") for n, item in enumerate(value)]
            continue
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            problem = _text(key, f"{path} (a key)")
            if problem is not None:
                return problem
            todo.append((item, depth + 1, path))
    return None


def _text(value: str, where: str) -> Rejection | None:
    if len(value) > MAX_TEXT_CHARS:
        return Rejection(
            "too_large", f"{where}: {len(value)} characters; the limit is {MAX_TEXT_CHARS}"
        )
    bad = _FORBIDDEN_TEXT.search(value)
    if bad is not None:
        return Rejection(
            "invalid_text",
            f"{where}: character U+{ord(bad.group()):04X} at {bad.start()} is not allowed "
            "(control characters, lone surrogates and direction overrides are refused)",
        )
    return None


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


def field_errors(exc: ValidationError) -> str:
    """A model's validation errors as `field: problem (got value)` sentences, no internals."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(_sentence(loc, err))
    return "; ".join(parts)


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
        else:
            parts.append(_sentence(loc, err))
    return Rejection(code, "; ".join(parts))


def _sentence(loc: str, err: ErrorDetails) -> str:
    """One validation error as `field: problem (got value)`."""
    if err["type"] == "missing":
        return f"{loc}: field required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg} {_got(loc, err.get('input'))}"


_CONTACT_FIELDS = ("number", "address", "email", "phone", "recipient")


def _got(loc: str, value: Any) -> str:
    """What was sent, unless it is (or may be) a contact point: those are not echoed."""
    if any(name in loc.lower() for name in _CONTACT_FIELDS):
        return "(the value is not repeated: it may be a contact point)"
    return f"(got {_short(value)})"


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
