"""What makes a policy set fit to run: it loads, and every template it can send renders.

`clarion policy check` prints this; `clarion policy publish` refuses a set on it;
a worker given a published set judges it the same way before it puts it in
force, so a set that would fail on one worker fails before it is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from channels.base import Message
from channels.lint import has_opt_out, limited_content, sms_segments
from channels.templates import VOICEMAIL, RenderError, TemplateMissing, Templates
from policies.contacts import reachable
from policies.loader import (
    PolicyLoadError,
    PolicyReport,
    check_sources,
    read_directory,
    read_templates,
)
from policies.model import PolicySet
from schemas.examples import EXAMPLE_DATA
from schemas.notifications import NotificationRequest

SAMPLE_LINKS = {"preferences": "https://clarion.example.com/p/sample-token"}
"""What `links.*` holds when `check` renders a template: a signed link in production."""


@dataclass(frozen=True, slots=True)
class Checked:
    """What `policy check` finds in a set: the set (None when it does not load) and the
    lines for a person, each with file:line where there is one."""

    policy: PolicySet | None
    errors: list[str]
    warnings: list[str]
    notes: list[str]

    def refused(self, strict: bool = False) -> bool:
        return self.policy is None or bool(self.errors) or (strict and bool(self.warnings))


def load_set(policies: Path, templates: Templates) -> PolicyReport:
    """The YAML in `policies` with the template files in `templates`, loaded and validated
    (PolicyLoadError when it does not load); nothing rendered."""
    texts = read_templates(templates.directory)
    return check_sources(read_directory(policies), templates.available(), texts)


def check_set(policies: Path, folder: Path, lenient: bool = False) -> Checked:
    """Load the YAML in `policies` with the templates in `folder`, and render every template
    a step can send: `policy check`, `policy publish` and a worker applying a published set
    all judge a set by this."""
    templates = Templates(folder)
    try:
        report = load_set(policies, templates)
    except PolicyLoadError as exc:
        return Checked(None, [str(e) for e in exc.errors], [], [])
    errors, warnings, notes = lint_templates(report.policy, templates, lenient)
    return Checked(report.policy, errors, [str(w) for w in report.warnings] + warnings, notes)


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
