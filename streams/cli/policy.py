"""`clarion policy check` and `clarion policy simulate`: what ops teams run before a deploy.

Both read files and print; the loading, checking and replaying are the pure
core's (`policies.loader`, `policies.simulator`).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from channels.templates import Templates
from policies.diff import (
    DecisionChange,
    decision_changes,
    first_instant,
    open_cases,
    rule_changes,
    template_changes,
)
from policies.loader import PolicyLoadError
from policies.model import PolicySet
from policies.simulator import Replayable, instant, simulate
from policies.versions import PolicyVersions
from schemas.intake import Rejection, check_event
from schemas.notifications import DeliveryReceipt
from streams.app import templates_dir
from streams.cli import timeline
from streams.intake.dedupe import RecentIds
from streams.runtime import collector
from streams.runtime.settings import Settings
from streams.versions.checks import check_set, load_set

FORMATS = ("table", "jsonl")


def load(policies: Path, templates: Templates, err: TextIO) -> tuple[PolicySet, list[str]] | None:
    """The set and its warnings; None (errors written to `err`) when it does not load."""
    try:
        report = load_set(policies, templates)
    except PolicyLoadError as exc:
        for error in exc.errors:
            err.write(f"{error}\n")
        return None
    return report.policy, [str(w) for w in report.warnings]


def check(
    policies: Path,
    templates: Path | None,
    strict: bool,
    out: TextIO,
    err: TextIO,
    lenient: bool = False,
) -> int:
    """Exit 1 on an error (or, with `strict`, a warning); `lenient` turns a missing opt-out
    instruction or a voicemail that says too much from an error into a warning, for drafts."""
    folder = templates_dir(policies, templates)
    found = check_set(policies, folder, lenient)
    for line in found.errors + found.warnings:
        err.write(f"{line}\n")
    if found.policy is None:
        return 1
    for line in found.notes:
        out.write(f"{line}\n")
    out.write(
        f"{policies}: {len(found.policy.escalations)} escalations, version "
        f"{found.policy.version} (its YAML and {len(found.policy.templates)} template files "
        f"from {folder}), {len(found.errors)} errors, {len(found.warnings)} warnings\n"
    )
    return 1 if found.refused(strict) else 0


def simulate_command(
    policies: Path,
    events: Path,
    until: datetime | None,
    fmt: str,
    templates: Path | None,
    out: TextIO,
    err: TextIO,
    changes: Sequence[tuple[datetime, Path]] = (),
) -> int:
    """`changes`: (instant, directory) policy changes in the stream, each in force from its
    instant, as `clarion policy publish --at` puts one in force on the workers."""
    loaded = load(policies, Templates(templates_dir(policies, templates)), err)
    if loaded is None:
        return 1
    policy: PolicySet | PolicyVersions = loaded[0]
    if changes:
        versions = PolicyVersions(loaded[0])
        for at, directory in changes:
            changed = load(directory, Templates(templates_dir(directory, None)), err)
            if changed is None:
                err.write(f"{directory}: does not load; nothing simulated\n")
                return 1
            versions.add(at, changed[0])
        policy = versions
    parsed, bad = read_events(events, err)
    with collector.for_replay():
        decisions, sim = simulate(parsed, policy, until)
    if fmt == "jsonl":
        for decision in decisions:
            out.write(json.dumps(timeline.row(decision)) + "\n")
    else:
        zones = {cid: list(s.profile.time_zones) for cid, s in sim.states.items()}
        out.write(timeline.render(decisions, zones))
    return 2 if bad else 0


def diff_command(
    old_dir: Path,
    new_dir: Path,
    events: Path | None,
    until: datetime | None,
    templates: Path | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """The rules that differ, and with `events`, the decisions that come out differently."""
    sets: list[PolicySet] = []
    folders = [templates_dir(directory, templates) for directory in (old_dir, new_dir)]
    for directory, folder in zip((old_dir, new_dir), folders, strict=True):
        loaded = load(directory, Templates(folder), err)
        if loaded is None:
            err.write(f"{directory}: does not load; nothing compared\n")
            return 1
        sets.append(loaded[0])
    old, new = sets
    out.write(f"policy version {old.version} ({old_dir}) -> {new.version} ({new_dir})\n")
    changes = rule_changes(old, new)
    out.write(f"rules: {_count(len(changes), 'change')}\n")
    for change in changes:
        before = "(absent)" if change.old is None else change.old
        after = "(absent)" if change.new is None else change.new
        out.write(f"  {change.path}: {before} -> {after}\n")
    words = template_changes(old, new)
    out.write(f"templates: {_count(len(words), 'change')}\n")
    for change in words:
        out.write("".join(_text_diff(change.path, *folders)))
    if events is None:
        return 0
    parsed, bad = read_events(events, err)
    with collector.for_replay():
        old_decisions, old_sim = simulate(parsed, old, until)
        new_decisions, _ = simulate(parsed, new, until)
        _write_open_cases(parsed, old, new, out)
    differ = decision_changes(old_decisions, new_decisions)
    first = first_instant(differ)
    if first is None:
        out.write(f"decisions for {events}: none differ (of {len(old_decisions)})\n")
        return 2 if bad else 0
    sides = Counter(c.side for c in differ)
    out.write(
        f"decisions for {events}: {_count(len(differ), 'differs', 'differ')} "
        f"({sides['old']} only with the old set, {sides['new']} only with the new; "
        f"first at {first:%Y-%m-%d %H:%MZ})\n"
    )
    by_customer: dict[str, list[DecisionChange]] = {}
    for differs in differ:
        by_customer.setdefault(differs.decision.customer_id, []).append(differs)
    for customer, changed in sorted(by_customer.items()):
        # The events, not the policies, give a profile: both replays hold the same one.
        zone = next(iter(old_sim.states[customer].profile.time_zones), None)
        out.write(f"  {customer}  ({zone or 'no known time zone'})\n")
        for differs in changed:
            sign = "-" if differs.side == "old" else "+"
            out.write(f"    {sign} {timeline.line(differs.decision, zone)}\n")
    return 2 if bad else 0


def _write_open_cases(
    events: list[Replayable], old: PolicySet, new: PolicySet, out: TextIO
) -> None:
    """The cases open after the last event under the old set, and what each does if the
    new set comes in force then: keep its ladder, or move (`on_policy_change: restart`)."""
    last = max((instant(e) for e in events), default=None)
    if last is None:
        return
    _, sim = simulate(events, old, last)
    cases = open_cases(sim.states.values(), last, old, new)
    moving = sum(1 for c in cases if c.moves is not None)
    out.write(
        f"open cases at {last:%Y-%m-%d %H:%MZ} (the last event), were the new set in force "
        f"then: {len(cases) - moving} keep their ladder, {moving} move\n"
    )
    for case in cases:
        fate = f"moves {case.moves}" if case.moves else f"keeps it ({old.version})"
        left = _count(case.steps_left, "step")
        out.write(f"  {case.customer_id}  {case.case_id}  {case.ladder}, {left} left: {fate}\n")


def _text_diff(path: str, old_folder: Path, new_folder: Path) -> Iterator[str]:
    """A template's words before and after, as a unified diff indented under its path."""
    name = path.removeprefix("templates/")
    before, after = _text_lines(old_folder / name), _text_lines(new_folder / name)
    for line in difflib.unified_diff(before, after, f"old/{path}", f"new/{path}"):
        yield "  " + (line if line.endswith("\n") else line + "\n")


def _text_lines(file: Path) -> list[str]:
    return file.read_text(encoding="utf-8").splitlines(keepends=True) if file.is_file() else []


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


class _Retries:
    """Intake's duplicate rule, in file order: a customer's repeated event or receipt id is
    a producer's retry, and intake drops it. Without this, a file holding a retry would
    simulate a decision the pipeline never makes.

    The ids are kept as intake keeps them (`streams.intake.dedupe.RecentIds`, at most
    `dedupe_max_ids` per customer). A file is one moment of the worker's wall
    clock, so the dedupe window never forgets one here.
    """

    def __init__(self) -> None:
        self._window = timedelta(hours=_DEFAULTS["dedupe_window_hours"].default)
        self._max = int(_DEFAULTS["dedupe_max_ids"].default)
        self._recent: dict[str, RecentIds] = {}
        self._lines: dict[tuple[str, str], int] = {}

    def seen(self, customer: str, item_id: str | None, line: int) -> int | None:
        """The line that first carried `item_id` for `customer`; None (and remembered) if new."""
        if item_id is None:  # the dispatcher's own receipts carry no id; intake keeps them all
            return None
        recent = self._recent.setdefault(customer, RecentIds([], self._window, self._max))
        if item_id in recent:
            return self._lines[customer, item_id]
        recent.add(item_id, _ONE_MOMENT)
        self._lines[customer, item_id] = line
        return None


_DEFAULTS = Settings.model_fields
_ONE_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)


def _dropped(name: str, item_id: str | None, first: int) -> str:
    said = f"duplicate {name} {item_id!r} (first on line {first})"
    return said + ": dropped, as intake drops a retry\n"


def read_events(events: Path, err: TextIO) -> tuple[list[Replayable], int]:
    """The file's events and receipts, and how many lines were invalid (each named on `err`)."""
    parsed: list[Replayable] = []
    bad = 0
    retries = _Retries()
    for number, line in _lines(events):
        item = _parsed(line)
        if isinstance(item, str):
            err.write(f"{events}:{number}: {item}\n")
            bad += 1
            continue
        if isinstance(item, DeliveryReceipt):
            name, item_id = "receipt_id", item.receipt_id
        else:
            name, item_id = "event_id", item.event_id
        first = retries.seen(item.customer_id, item_id, number)
        if first is None:
            parsed.append(item)
        else:
            err.write(f"{events}:{number}: {_dropped(name, item_id, first)}")
    return parsed, bad


def _parsed(line: str) -> Replayable | str:
    """An event or a receipt, or why the line is neither."""
    if _is_receipt(line):
        try:
            return DeliveryReceipt.model_validate_json(line)
        except ValidationError as exc:
            return f"not a delivery receipt: {exc.errors()[0]['msg']}"
    checked = check_event(line.encode(), None, max_bytes=1 << 20, keyed=False)
    return checked.reason if isinstance(checked, Rejection) else checked


def _is_receipt(line: str) -> bool:
    """A line from `delivery-receipts` (it has a notification id and a status, and no type)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(obj, dict) and "notification_id" in obj and "status" in obj and "type" not in obj
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\n")
