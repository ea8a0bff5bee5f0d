"""JSON Schema for producers and ledger readers, generated from the models.

`python -m schemas.export` rewrites `schemas/json/`; a test fails when the
checked-in files differ from what the models say, so the published contract
cannot drift from the code that enforces it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from schemas.events import EVENT_ADAPTER, EVENT_CLASSES
from schemas.notifications import DeliveryReceipt, NotificationRequest
from schemas.repairs import StateRepair

JSON_DIR = Path(__file__).parent / "json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def documents() -> dict[str, dict[str, Any]]:
    """Every schema document by its file name under `schemas/json/`."""
    docs: dict[str, dict[str, Any]] = {
        "envelope.json": _stamp(EVENT_ADAPTER.json_schema(), "AccountEvent", "envelope.json"),
    }
    for type_name, cls in sorted(EVENT_CLASSES.items()):
        name = f"events/{type_name}.json"
        docs[name] = _stamp(cls.model_json_schema(), type_name, name)
    outputs: dict[str, type[BaseModel]] = {
        "decision.json": Decision,
        "notification-request.json": NotificationRequest,
        "delivery-receipt.json": DeliveryReceipt,
        "dead-letter.json": DeadLetter,
        "state-repair.json": StateRepair,
    }
    for name, model in outputs.items():
        docs[name] = _stamp(model.model_json_schema(), model.__name__, name)
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _stamp(schema: dict[str, Any], title: str, name: str) -> dict[str, Any]:
    return {
        "$schema": _DIALECT,
        "$id": f"https://clarion.dev/schemas/v1/{name}",
        **schema,
        "title": title,
    }


def write(directory: Path = JSON_DIR) -> list[Path]:
    written = []
    for name, doc in documents().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"{path}\n")
