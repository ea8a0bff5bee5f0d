"""`clarion policy check` and `clarion policy simulate`: what ops teams run before a deploy.

Both read files and print; the loading, checking and replaying are the pure
core's (`policies.loader`, `policies.simulator`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

from channels.templates import Templates
from policies.loader import PolicyLoadError, check_sources, read_directory
from policies.model import PolicySet
from policies.simulator import simulate
from schemas.events import Event
from schemas.intake import Rejection, check_event
from streams import timeline
from streams.app import EXAMPLE_POLICIES

FORMATS = ("table", "jsonl")


def templates_dir(policies: Path, explicit: Path | None) -> Path:
    """`--templates`, else `templates/` beside the policy files, else the bundled examples."""
    if explicit is not None:
        return explicit
    beside = policies / "templates"
    return beside if beside.is_dir() else EXAMPLE_POLICIES / "templates"


def load(policies: Path, templates: Path | None, err: TextIO) -> tuple[PolicySet, list[str]] | None:
    """The checked set and its warnings; None (errors written to `err`) when it does not load."""
    folder = templates_dir(policies, templates)
    try:
        report = check_sources(read_directory(policies), Templates(folder).available())
    except PolicyLoadError as exc:
        for error in exc.errors:
            err.write(f"{error}\n")
        return None
    return report.policy, [str(w) for w in report.warnings]


def check(policies: Path, templates: Path | None, strict: bool, out: TextIO, err: TextIO) -> int:
    loaded = load(policies, templates, err)
    if loaded is None:
        return 1
    policy, warnings = loaded
    for warning in warnings:
        err.write(f"{warning}\n")
    out.write(
        f"{policies}: {len(policy.escalations)} escalations, version {policy.version}, "
        f"templates from {templates_dir(policies, templates)}, {len(warnings)} warnings\n"
    )
    return 1 if strict and warnings else 0


def simulate_command(
    policies: Path,
    events: Path,
    until: datetime | None,
    fmt: str,
    templates: Path | None,
    out: TextIO,
    err: TextIO,
) -> int:
    loaded = load(policies, templates, err)
    if loaded is None:
        return 1
    policy, _ = loaded
    parsed: list[Event] = []
    bad = 0
    for number, line in _lines(events):
        checked = check_event(line.encode(), None, max_bytes=1 << 20, keyed=False)
        if isinstance(checked, Rejection):
            err.write(f"{events}:{number}: {checked.reason}\n")
            bad += 1
        else:
            parsed.append(checked)
    decisions, sim = simulate(parsed, policy, until)
    if fmt == "jsonl":
        for decision in decisions:
            out.write(json.dumps(timeline.row(decision)) + "\n")
    else:
        zones = {cid: list(s.profile.time_zones) for cid, s in sim.states.items()}
        out.write(timeline.render(decisions, zones))
    return 2 if bad else 0


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\n")
