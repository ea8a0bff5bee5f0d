"""`clarion policy check` and `clarion policy simulate`: what ops teams run before a deploy.

Both read files and print; the loading, checking and replaying are the pure
core's (`policies.loader`, `policies.simulator`).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from channels.base import Message
from channels.lint import has_opt_out, limited_content, sms_segments
from channels.templates import VOICEMAIL, RenderError, TemplateMissing, Templates
from policies.contacts import reachable
from policies.diff import (
    DecisionChange,
    decision_changes,
    first_instant,
    rule_changes,
    template_changes,
)
from policies.loader import PolicyLoadError, check_sources, read_directory, read_templates
from policies.model import PolicySet
from policies.simulator import Replayable, simulate
from schemas.examples import EXAMPLE_DATA
from schemas.intake import Rejection, check_event
from schemas.notifications import DeliveryReceipt, NotificationRequest
from streams.app import templates_dir
from streams.cli import timeline
from streams.intake.dedupe import RecentIds
from streams.runtime import collector
from streams.runtime.settings import Settings

SAMPLE_LINKS = {"preferences": "https://clarion.example.com/p/sample-token"}
"""What `links.*` holds when `check` renders a template: a signed link in production."""

FORMATS = ("table", "jsonl")


def load(policies: Path, templates: Templates, err: TextIO) -> tuple[PolicySet, list[str]] | None:
    """The checked set and its warnings; None (errors written to `err`) when it does not load."""
    try:
        texts = read_templates(templates.directory)
        report = check_sources(read_directory(policies), templates.available(), texts)
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
    found = Templates(folder)
    loaded = load(policies, found, err)
    if loaded is None:
        return 1
    policy, warnings = loaded
    errors, template_warnings, notes = lint_templates(policy, found, lenient)
    warnings += template_warnings
    for line in errors + warnings:
        err.write(f"{line}\n")
    for line in notes:
        out.write(f"{line}\n")
    out.write(
        f"{policies}: {len(policy.escalations)} escalations, version {policy.version} "
        f"(its YAML and {len(policy.templates)} template files from {folder}), "
        f"{len(errors)} errors, {len(warnings)} warnings\n"
    )
    return 1 if errors or (strict and warnings) else 0


OPT_OUT_RULES = {
    "debt_collection": "Reg F 1006.6(e) wants one in every electronic communication",
    "marketing": "CAN-SPAM and the TCPA want one in every marketing message",
}
"""The kinds of category whose emails and SMS must say how to opt out, and the rule."""
OPT_OUT_KINDS = frozenset(OPT_OUT_RULES)


def lint_templates(
    policy: PolicySet, templates: Templates, lenient: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Render every template a step can use, in every locale it has, with sample data.

    Returns errors (it does not render; a debt collection or marketing SMS or
    email without opt-out text, or a voicemail that is not a limited-content
    message: warnings with `lenient`), warnings and notes (SMS segment counts).
    """
    errors: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []
    available = templates.available()
    done: set[tuple[str, str, str, str]] = set()
    for name, esc in policy.escalations.items():
        for ladder in esc.ladders:
            for step in ladder.steps:
                if step.send is None:
                    continue
                for template, channel, locale in sorted(available):
                    if template != step.send.template or channel not in reachable(step.send):
                        continue
                    if (template, channel, locale, esc.category) in done:
                        continue
                    done.add((template, channel, locale, esc.category))
                    request = sample_request(name, esc.trigger, esc.category, step.send.template)
                    request = request.model_copy(update={"channel": channel, "locale": locale})
                    where, message = _render_sample(templates, request, errors)
                    if message is None:
                        continue
                    if channel == "sms":
                        count, encoding = sms_segments(message.body)
                        notes.append(f"{where}: {count} SMS segment(s), {encoding}")
                    kind = policy.categories[esc.category].kind
                    if kind in OPT_OUT_KINDS and not has_opt_out(channel, message.body):
                        found = warnings if lenient else errors
                        found.append(
                            f"{where}: {'warning: ' if lenient else ''}a "
                            f"{kind.replace('_', ' ')} {channel} message with no opt-out "
                            f"instruction (reply STOP / unsubscribe): {OPT_OUT_RULES[kind]}"
                        )
    (warnings if lenient else errors).extend(voicemail_problems(policy, templates, lenient))
    confirmation = policy.revocation_confirmation
    for template, channel, locale in sorted(available):
        if template != confirmation or channel != "sms":
            continue
        request = sample_request("consent", "consent.changed", "consent", template)
        request = request.model_copy(update={"channel": "sms", "locale": locale})
        where, message = _render_sample(templates, request, errors)
        if message is None:
            continue
        count, encoding = sms_segments(message.body)
        notes.append(f"{where}: {count} SMS segment(s), {encoding} (the revocation confirmation)")
    return errors, warnings, notes


def _render_sample(
    templates: Templates, request: NotificationRequest, errors: list[str]
) -> tuple[str, Message | None]:
    """The template's path, and the request rendered with sample data; None when it does
    not render, with the error in `errors`."""
    where = f"templates/{request.template}/{request.channel}.{request.locale}.j2"
    try:
        return where, templates.render(request, SAMPLE_LINKS)
    except (RenderError, TemplateMissing) as exc:
        errors.append(f"{where}: does not render with sample data: {exc}")
        return where, None


def voicemail_problems(policy: PolicySet, templates: Templates, lenient: bool) -> list[str]:
    """The voicemail, in each locale, as a limited-content message, where a debt collection
    step can call: what an answering machine hears is all a household member may hear.
    Errors, as a missing opt-out is; warnings with `lenient`."""
    calling = [
        (name, esc)
        for name, esc in policy.escalations.items()
        if policy.categories[esc.category].collects_debt
        and any(
            step.send is not None and "voice" in reachable(step.send)
            for ladder in esc.ladders
            for step in ladder.steps
        )
    ]
    if not calling:
        return []
    name, esc = calling[0]
    found: list[str] = []
    for template, channel, locale in sorted(templates.available()):
        if template != VOICEMAIL or channel != "voice":
            continue
        request = sample_request(name, esc.trigger, esc.category, VOICEMAIL)
        request = request.model_copy(update={"channel": "voice", "locale": locale})
        try:
            text = templates.render(request, SAMPLE_LINKS).body
        except (RenderError, TemplateMissing):
            continue  # an error already, from the step's own rendering
        path = templates.path_for(VOICEMAIL, "voice", locale)
        problems = limited_content(
            text,
            path.read_text(encoding="utf-8"),
            customer_name=request.context["customer"]["name"],
            person=policy.voicemail.person,
            extra_words=policy.voicemail.words,
        )
        found += [
            f"templates/{VOICEMAIL}/voice.{locale}.j2:{line}: {'warning: ' if lenient else ''}"
            "not a limited-content "
            f"voicemail (Reg F 1006.2(j)), and {name} can call: {problem}"
            for line, problem in problems
        ]
    return found


def sample_request(
    escalation: str, trigger: str, category: str, template: str
) -> NotificationRequest:
    return NotificationRequest(
        notification_id="ntf-sample",
        customer_id="C-0000",
        account_id="A-0000-1234",
        case_id=f"{escalation}/A-0000-1234/sample",
        escalation=escalation,
        ladder="sample",
        step=0,
        category=category,
        channel="email",
        recipient="sample@example.com",
        template=template,
        locale="en",
        requested_at=datetime(2026, 11, 20, 15, tzinfo=UTC),
        policy_version="sample",
        context={
            "data": EXAMPLE_DATA.get(trigger, {}),
            "account_id": "A-0000-1234",
            "customer": {"name": "Sample Customer", "locale": "en"},
        },
    )


def simulate_command(
    policies: Path,
    events: Path,
    until: datetime | None,
    fmt: str,
    templates: Path | None,
    out: TextIO,
    err: TextIO,
) -> int:
    loaded = load(policies, Templates(templates_dir(policies, templates)), err)
    if loaded is None:
        return 1
    policy, _ = loaded
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
