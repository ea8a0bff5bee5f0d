"""Loading a directory of YAML policy files into one validated `PolicySet`.

Errors point where a person must look: `10-collections.yaml:12:9: ...`. The
loader composes YAML nodes (which keep their line and column) next to the plain
data, and maps each pydantic error location back onto a node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.contacts import reachable
from policies.model import (
    KINDS_BY_NAME,
    VOICEMAIL_TEMPLATE,
    Arm,
    Category,
    Condition,
    Duration,
    Escalation,
    FrequencyCap,
    PolicyFile,
    PolicySet,
    Send,
)
from schemas.customer import Preferences, Profile
from schemas.events import EVENT_DATA

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class PolicyError:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PolicyLoadError(Exception):
    """The set did not load; `errors` says every place that is wrong."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True, slots=True)
class PolicySource:
    """One file's text; the loader reads no disk, the caller hands it the texts."""

    name: str
    text: str


def read_directory(directory: Path) -> list[PolicySource]:
    """The `*.yaml` files of a directory in name order (the shell's helper)."""
    if not directory.is_dir():
        raise PolicyLoadError([PolicyError(str(directory), 0, 0, "not a directory")])
    paths = sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not paths:
        raise PolicyLoadError([PolicyError(str(directory), 0, 0, "no .yaml policy files here")])
    return [PolicySource(p.name, p.read_text(encoding="utf-8")) for p in paths]


Templates = frozenset[tuple[str, str, str]]
"""Every (template, channel, locale) that has a file; the shell lists the directory."""


@dataclass(frozen=True, slots=True)
class PolicyReport:
    policy: PolicySet
    warnings: list[PolicyError]
    """Compliance findings: the set loads, but a person should look."""


def read_templates(directory: Path) -> dict[str, str]:
    """Every template file under `directory`, by its path there (`payment-missed/sms.en.j2`)."""
    if not directory.is_dir():
        return {}
    paths = sorted(p for p in directory.glob("*/*.j2") if p.is_file())
    return {f"{p.parent.name}/{p.name}": p.read_text(encoding="utf-8") for p in paths}


def load_directory(directory: Path, templates_dir: Path | None = None) -> PolicySet:
    """The set in `directory`; its version covers the templates it uses (from `templates_dir`,
    else `templates/` beside the files)."""
    texts = read_templates(templates_dir or directory / "templates")
    return check_sources(read_directory(directory), texts=texts).policy


def load_sources(sources: Iterable[PolicySource], templates: Templates | None = None) -> PolicySet:
    return check_sources(sources, templates).policy


def check_sources(
    sources: Iterable[PolicySource],
    templates: Templates | None = None,
    texts: Mapping[str, str] | None = None,
) -> PolicyReport:
    """Load and validate; with `templates`, every template name must resolve too.

    `texts` are the template files by path (`read_templates`): the version covers
    those the set can use, so two sets that differ only in a message's words have
    different versions, and a decision's version names the words that went out.
    """
    sources = list(sources)
    errors: list[PolicyError] = []
    files: list[tuple[PolicySource, PolicyFile, yaml.Node]] = []
    for source in sources:
        parsed = _parse_file(source, errors)
        if parsed is not None:
            files.append((source, *parsed))
    if errors:
        raise PolicyLoadError(errors)
    warnings: list[PolicyError] = []
    policy = _merge(files, "pending", errors, warnings, templates)
    if errors:
        raise PolicyLoadError(sorted(errors, key=lambda e: (e.file, e.line, e.column)))
    used = _used_templates(policy, texts or {})
    policy = policy.model_copy(update={"version": _version(sources, used), "templates": used})
    return PolicyReport(policy, sorted(warnings, key=lambda e: (e.file, e.line, e.column)))


def _used_templates(policy: PolicySet, texts: Mapping[str, str]) -> dict[str, str]:
    """Each file of a template the set can send, with its content's digest."""
    names = {policy.revocation_confirmation} if policy.revocation_confirmation else set()
    for esc in policy.escalations.values():
        for ladder in esc.ladders:
            for step in ladder.steps:
                if step.send is not None:
                    names.add(step.send.template)
                    if "voice" in reachable(step.send):
                        names.add(VOICEMAIL_TEMPLATE)
    return {
        path: hashlib.sha256(text.encode()).hexdigest()[:12]
        for path, text in sorted(texts.items())
        if path.split("/")[0] in names
    }


def _version(sources: list[PolicySource], templates: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for source in sorted(sources, key=lambda s: s.name):
        digest.update(source.name.encode() + b"\0" + source.text.encode() + b"\0")
    for path, content in templates.items():
        digest.update(b"templates/" + path.encode() + b"\0" + content.encode() + b"\0")
    return "pol-" + digest.hexdigest()[:12]


def _parse_file(
    source: PolicySource, errors: list[PolicyError]
) -> tuple[PolicyFile, yaml.Node] | None:
    try:
        node = yaml.compose(source.text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source.text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        errors.append(PolicyError(source.name, line, col, f"invalid YAML: {exc.problem or exc}"))
        return None
    if node is None or not isinstance(data, dict):
        errors.append(
            PolicyError(source.name, 1, 1, "a policy file is a YAML mapping with version: 1")
        )
        return None
    try:
        return PolicyFile.model_validate(data), node
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            line, col = _position(node, err["loc"], key=err["type"] == "extra_forbidden")
            errors.append(PolicyError(source.name, line, col, _message(err)))
        return None


def _message(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check the spelling; see docs/policy-format)"
    if kind == "missing":
        return f"{where}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _is_union_tag(part: Any) -> bool:
    # pydantic names union members in locations (e.g. "str", "list[...]", "function-before[...]")
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "list", "dict"})


def _position(node: yaml.Node, loc: Sequence[Any], *, key: bool) -> tuple[int, int]:
    """The line and column of the node at `loc` (of its key, for an unknown key)."""
    current = node
    for part in loc:
        if _is_union_tag(part):
            continue
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if k.value == str(part):
                    current = v if not (key and part == loc[-1]) else k
                    break
            else:
                break
        elif (
            isinstance(current, yaml.SequenceNode)
            and isinstance(part, int)
            and part < len(current.value)
        ):
            current = current.value[part]
        else:
            break
    return current.start_mark.line + 1, current.start_mark.column + 1


_SCALARS = (
    "default_locale",
    "time_zone_fallback",
    "holidays",
    "contact_wait",
    "revocation_confirmation",
    "voicemail",
)
"""Settings of the whole set: any file may give one, and two files may not disagree."""


def _merge(
    files: list[tuple[PolicySource, PolicyFile, yaml.Node]],
    version: str,
    errors: list[PolicyError],
    warnings: list[PolicyError],
    templates: Templates | None,
) -> PolicySet:
    merged: dict[str, Any] = {
        "categories": {},
        "contact_windows": {},
        "frequency_caps": [],
        "escalations": {},
    }
    scalars: dict[str, tuple[str, Any]] = {}
    positions: dict[str, tuple[str, yaml.Node]] = {}
    cap_positions: list[tuple[str, int, int]] = []
    for source, pf, node in files:
        for field in _SCALARS:
            value = getattr(pf, field)
            if value is None:
                continue
            if field in scalars and scalars[field][1] != value:
                line, col = _position(node, [field], key=True)
                errors.append(
                    PolicyError(
                        source.name,
                        line,
                        col,
                        f"{field} is already set differently in {scalars[field][0]}",
                    )
                )
            scalars[field] = (source.name, value)
        for section in ("categories", "contact_windows", "escalations"):
            for name, value in getattr(pf, section).items():
                if name in merged[section]:
                    line, col = _position(node, [section, name], key=True)
                    errors.append(
                        PolicyError(
                            source.name,
                            line,
                            col,
                            f"{section}.{name} is already defined in "
                            f"{positions[section + name][0]}",
                        )
                    )
                merged[section][name] = value
                positions[section + name] = (source.name, node)
        merged["frequency_caps"].extend(pf.frequency_caps)
        for i in range(len(pf.frequency_caps)):
            cap_positions.append(
                (source.name, *_position(node, ["frequency_caps", i, "categories"], key=False))
            )

    for name, category in list(merged["categories"].items()):
        if category.kind is None:
            kind = KINDS_BY_NAME.get(name, "servicing")
            merged["categories"][name] = category.model_copy(update={"kind": kind})
            src, node = positions["categories" + name]
            line, col = _position(node, ["categories", name], key=True)
            warnings.append(
                PolicyError(
                    src,
                    line,
                    col,
                    f"warning: categories.{name} declares no kind; read as {kind} from its name. "
                    "Say what its messages are (kind: debt_collection, servicing, security, "
                    "marketing or notice): the compliance checks follow it",
                )
            )
    locale = scalars.get("default_locale", ("", "en"))[1]
    experiments: dict[str, str] = {}
    for name, esc in merged["escalations"].items():
        src, node = positions["escalations" + name]
        found = _escalation_problems(name, esc, merged["categories"], merged["escalations"])
        if esc.experiment is not None:
            other = experiments.setdefault(esc.experiment.name, name)
            if other != name:
                found.append(
                    (
                        f"escalations.{name}.experiment.name: {esc.experiment.name!r} is "
                        f"{other}'s experiment already; its report would mix the two",
                        ["experiment", "name"],
                    )
                )
        found += _path_problems(name, esc)
        if templates is not None:
            found += _template_problems(name, esc, templates, locale)
        for problem, loc in found:
            line, col = _position(node, ["escalations", name, *loc], key=False)
            errors.append(PolicyError(src, line, col, problem))
        for problem, loc in _compliance_warnings(name, esc, merged):
            line, col = _position(node, ["escalations", name, *loc], key=False)
            warnings.append(PolicyError(src, line, col, "warning: " + problem))
    for cap, (src, line, col) in zip(merged["frequency_caps"], cap_positions, strict=True):
        for cat in cap.categories or []:
            if cat not in merged["categories"]:
                errors.append(
                    PolicyError(src, line, col, f"a frequency cap names unknown category {cat!r}")
                )
    confirmation = scalars.get("revocation_confirmation")
    if templates is not None and confirmation is not None:
        src, template = confirmation
        if (template, "sms", locale) not in templates:
            node = next(n for source, _, n in files if source.name == src)
            line, col = _position(node, ["revocation_confirmation"], key=False)
            errors.append(
                PolicyError(
                    src,
                    line,
                    col,
                    f"revocation_confirmation: unknown template {template!r} "
                    f"(no templates/{template}/sms.{locale}.j2)",
                )
            )
    if "default" not in merged["contact_windows"] and files:
        errors.append(PolicyError(files[0][0].name, 1, 1, "contact_windows.default is required"))

    return PolicySet(
        version=version,
        **{field: value for field, (_, value) in scalars.items()},
        **merged,
    )


def _escalation_problems(
    name: str, esc: Escalation, categories: dict[str, Any], escalations: dict[str, Escalation]
) -> list[tuple[str, list[Any]]]:
    problems: list[tuple[str, list[Any]]] = []
    if esc.category not in categories:
        known = ", ".join(sorted(categories)) or "none"
        problems.append(
            (
                f"escalations.{name}.category: unknown category {esc.category!r} "
                f"(defined: {known})",
                ["category"],
            )
        )
    ladder_names = [ladder.name for ladder in esc.ladders]
    arms = esc.experiment.arms if esc.experiment is not None else []
    for k, arm in enumerate(arms):
        problem = _arm_problem(name, esc, arm, ladder_names, escalations)
        if problem is not None:
            key = "ladder" if arm.ladder is not None else "escalation"
            problems.append(
                (
                    f"escalations.{name}.experiment.arms.{k}.{key}: {problem}",
                    ["experiment", "arms", k, key],
                )
            )
    holdout = esc.experiment is not None and esc.experiment.holdout > 0
    category = categories.get(esc.category)
    if holdout and category is not None and category.required:
        problems.append(
            (
                f"escalations.{name}.experiment.holdout: {esc.category!r} is a required "
                "category, whose notices are never held out",
                ["experiment", "holdout"],
            )
        )
    for event, target in esc.switch_on.items():
        if target not in ladder_names:
            problems.append(
                (
                    f"escalations.{name}.switch_on.{event}: no ladder named {target!r}",
                    ["switch_on", event],
                )
            )
    catch_all = next((i for i, ladder in enumerate(esc.ladders) if ladder.when is None), None)
    reached = {*esc.switch_on.values(), *(arm.ladder for arm in arms)}
    for i, ladder in enumerate(esc.ladders):
        if catch_all is not None and i > catch_all and ladder.name not in reached:
            problems.append(
                (
                    f"escalations.{name}.ladders.{i}: ladder {ladder.name!r} can never be "
                    f"reached: {esc.ladders[catch_all].name!r} before it has no `when` and "
                    "no switch_on or experiment arm names it",
                    ["ladders", i, "name"],
                )
            )
        previous: Duration | None = None
        for j, step in enumerate(ladder.steps):
            if previous is not None and _later(previous, step.after):
                problems.append(
                    (
                        f"escalations.{name}.ladders.{i}.steps.{j}: after {step.after} comes "
                        f"before the previous step's {previous}; list steps in time order",
                        ["ladders", i, "steps", j, "after"],
                    )
                )
            previous = step.after
    return problems


def _arm_problem(
    name: str,
    esc: Escalation,
    arm: Arm,
    ladder_names: list[str],
    escalations: dict[str, Escalation],
) -> str | None:
    """What is wrong with the ladder or the escalation an experiment's arm runs, if anything."""
    if arm.ladder is not None:
        return None if arm.ladder in ladder_names else f"no ladder named {arm.ladder!r}"
    if arm.escalation is None:
        return None
    other = escalations.get(arm.escalation)
    if other is None or arm.escalation == name:
        return f"no other escalation named {arm.escalation!r}"
    if other.trigger != esc.trigger:
        return (
            f"{arm.escalation!r} opens on {other.trigger}, not {esc.trigger}: "
            "an arm's escalation takes the same events"
        )
    if other.experiment is not None:
        return f"{arm.escalation!r} runs an experiment of its own"
    return None


def _later(a: Duration, b: Duration) -> bool:
    """True when `a` is surely later than `b` (business days count as at least whole days)."""

    def approx(d: Duration) -> float:
        fixed = d.fixed
        return fixed.total_seconds() if fixed is not None else d.amount * 86400.0

    return approx(a) > approx(b)


def _template_problems(
    name: str, esc: Escalation, templates: Templates, locale: str
) -> list[tuple[str, list[Any]]]:
    """Each template must exist, in the default locale, for every channel its step can land on."""
    problems: list[tuple[str, list[Any]]] = []
    for i, ladder in enumerate(esc.ladders):
        for j, step in enumerate(ladder.steps):
            if step.send is None:
                continue
            missing = [
                channel
                for channel in reachable(step.send)
                if (step.send.template, channel, locale) not in templates
            ]
            if missing:
                files = ", ".join(f"{c}.{locale}.j2" for c in missing)
                problems.append(
                    (
                        f"escalations.{name}.ladders.{i}.steps.{j}: unknown template "
                        f"{step.send.template!r} for {', '.join(missing)} (no {files} in "
                        f"templates/{step.send.template}/; the step can land on "
                        f"{', '.join(reachable(step.send))})",
                        ["ladders", i, "steps", j, "send", "template"],
                    )
                )
    return problems


def _compliance_warnings(
    name: str, esc: Escalation, merged: dict[str, Any]
) -> list[tuple[str, list[Any]]]:
    """What loads but deserves a compliance officer's eye (`policy check --strict` fails on it).

    By the category's kind, not its name: a debt collection category called `arrears`
    is held to the same rules as one called `collections`.
    """
    found: list[tuple[str, list[Any]]] = []
    categories: dict[str, Category] = merged["categories"]
    caps: list[FrequencyCap] = merged["frequency_caps"]
    category = categories.get(esc.category)
    if category is None:
        return found
    debt = category.collects_debt
    if debt and category.contact_windows != "enforce":
        found.append(
            (
                f"{name}: a debt collection escalation whose category ignores contact windows "
                "(Reg F 1006.6(b)(1): no communication at an inconvenient time)",
                ["category"],
            )
        )
    if debt and not category.required and category.frequency_caps != "enforce":
        found.append(
            (
                f"{name}: a debt collection escalation whose category is exempt from frequency "
                "caps (Reg F 1006.14(b): 7 calls in 7 days, and none for 7 days after a "
                "conversation)",
                ["category"],
            )
        )
    if debt and not category.required and not _has_validation_notice(esc, merged):
        found.append(
            (
                f"{name}: a debt collection escalation with no validation notice: no step "
                f"with a deadline, and no required debt collection escalation on "
                f"{esc.trigger}. Reg F 1006.34 wants the notice in the first communication "
                "or within five days of it (a required category, `deadline: 5d`)",
                ["ladders"],
            )
        )
    if category.kind == "marketing" and category.consent != "opt_in":
        found.append((f"{name}: a marketing escalation without consent: opt_in", ["category"]))
    voice_capped = category.frequency_caps == "enforce" and any(
        cap.matches_channel("voice") and (cap.categories is None or esc.category in cap.categories)
        for cap in caps
    )
    for i, ladder in enumerate(esc.ladders):
        for j, step in enumerate(ladder.steps):
            if step.send is not None and _names_voice(step.send) and not voice_capped:
                found.append(
                    (
                        f"escalations.{name}.ladders.{i}.steps.{j}: a step that can call, in "
                        f"category {esc.category!r}, which no voice frequency cap covers",
                        ["ladders", i, "steps", j, "send", "channel"],
                    )
                )
    return found


def _has_validation_notice(esc: Escalation, merged: dict[str, Any]) -> bool:
    """A step with a deadline in the escalation, or a required debt collection escalation
    opened by the same event (the notice as a notice of its own, which becomes a letter
    when no channel may carry it)."""
    if any(step.deadline is not None for ladder in esc.ladders for step in ladder.steps):
        return True
    for other in merged["escalations"].values():
        category = merged["categories"].get(other.category)
        if (
            other.trigger == esc.trigger
            and category is not None
            and category.collects_debt
            and category.required
        ):
            return True
    return False


def _names_voice(send: Send) -> bool:
    """A step that calls by name (not merely a `preferred` that could land on a call)."""
    named = send.channel if isinstance(send.channel, list) else [send.channel]
    return "voice" in named or "voice" in send.fallback


CASE_FACTS = frozenset({"steps_sent", "ladder", "escalation", "account_id", "paused", "received"})
CUSTOMER_FACTS = (
    frozenset(Profile.model_fields)
    | frozenset(Preferences.model_fields)
    | {
        "email",
        "phone",
    }
)


def _path_problems(name: str, esc: Escalation) -> list[tuple[str, list[Any]]]:
    """A condition on a field that cannot exist is a typo that would silently never hold."""
    problems: list[tuple[str, list[Any]]] = []
    data_fields = frozenset(EVENT_DATA[esc.trigger].model_fields)
    places: list[tuple[Condition | None, list[Any]]] = []
    for i, ladder in enumerate(esc.ladders):
        places.append((ladder.when, ["ladders", i, "when"]))
        places += [(s.when, ["ladders", i, "steps", j, "when"]) for j, s in enumerate(ladder.steps)]
    for condition, loc in places:
        for path in condition or {}:
            root, _, rest = path.partition(".")
            head = rest.split(".")[0]
            known = {"data": data_fields, "customer": CUSTOMER_FACTS, "case": CASE_FACTS}[root]
            if head not in known:
                problems.append(
                    (
                        f"escalations.{name}: condition on unknown path {path!r} "
                        f"(known under {root}.: {', '.join(sorted(known))})",
                        [*loc, path],
                    )
                )
    return problems
