"""One valid event of every v1 type, for round-trip and intake tests."""

from __future__ import annotations

import copy
import json
from typing import Any

from schemas.examples import EXAMPLE_DATA

DATA: dict[str, dict[str, Any]] = EXAMPLE_DATA


def event(type_name: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"evt-{type_name}",
        "type": type_name,
        "schema_version": 1,
        "occurred_at": "2026-11-20T14:00:00Z",
        "customer_id": "C-1",
        "account_id": "A-1",
        "source": "test",
        "data": copy.deepcopy(DATA[type_name]),
    }
    base.update(overrides)
    return base


def raw(type_name: str, **overrides: Any) -> bytes:
    return json.dumps(event(type_name, **overrides)).encode()
