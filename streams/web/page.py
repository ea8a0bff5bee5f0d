"""The customer's preference page (`/p/{token}`): plain HTML, one form, no script.

The token is the only thing in the URL (streams/web/links.py): it names the
customer and expires. A bad or expired token gets a page that says so and
shows nothing else. Saving writes a `customer.preferences.updated` event,
like the API, and the page confirms what was saved. Legally required
categories are shown switched on and locked, with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from pydantic import ValidationError

from policies.model import PolicySet
from policies.state import CustomerState
from schemas.customer import Preferences
from schemas.notifications import NotificationRequest
from schemas.types import CHANNELS
from streams.kafka import topics
from streams.runtime.settings import Settings
from streams.web import bodies
from streams.web.api import PreferencesUpdate, preferences_event
from streams.web.links import BadLink, LinkKeys
from streams.web.reads import forwarded, state_reader
from streams.web.words import Words, words_for

log = structlog.get_logger(__name__)


def _accepted(request: Request) -> list[str]:
    """The browser's languages, most wanted first (for a page that knows no customer)."""
    header = request.headers.get("Accept-Language", "")
    tagged: list[tuple[float, str]] = []
    for part in header.split(","):
        lang, _, q = part.strip().partition(";q=")
        try:
            tagged.append((float(q or 1), lang))
        except ValueError:
            continue
    return [lang for _, lang in sorted(tagged, key=lambda t: -t[0])]  # stable: ties keep order


STYLE = """
:root { font-family: system-ui, sans-serif; line-height: 1.5; color: #1b1f24; }
body { margin: 0 auto; max-width: 36rem; padding: 1rem; }
h1 { font-size: 1.5rem; }
fieldset { border: 1px solid #c9ced6; border-radius: .5rem; margin: 0 0 1rem;
           padding: .75rem 1rem; }
legend { font-weight: 600; padding: 0 .25rem; }
label { display: block; padding: .35rem 0; }
input[type=radio], input[type=checkbox] { width: 1.2rem; height: 1.2rem; vertical-align: -.2rem; }
input[type=time] { font-size: 1rem; padding: .25rem; }
.why { color: #4a5360; font-size: .9rem; margin: 0 0 .35rem 1.7rem; }
button { font-size: 1rem; padding: .6rem 1.2rem; border-radius: .4rem; border: 0;
         background: #0b5cad; color: #fff; cursor: pointer; }
:focus-visible { outline: 3px solid #f2a900; outline-offset: 2px; }
.notice { background: #eef6ee; border-left: .3rem solid #2e7d32; padding: .5rem 1rem; }
.problem { background: #fdecea; border-left: .3rem solid #c62828; padding: .5rem 1rem; }
"""


def preference_links(settings: Settings) -> Callable[[NotificationRequest], dict[str, str]]:
    """The links a message carries: its customer's signed page, when links are configured."""
    keys = LinkKeys.parse(settings.link_keys.get_secret_value()) if settings.link_keys else None
    public_url = settings.public_url

    def links(request: NotificationRequest) -> dict[str, str]:
        if keys is None or public_url is None:
            return {}
        expires = datetime.now(UTC) + timedelta(days=settings.link_ttl_days)
        token = keys.sign(request.customer_id, expires)
        return {"preferences": f"{public_url.rstrip('/')}/p/{token}"}

    return links


def install(
    app: faust.App,
    settings: Settings,
    in_force: Callable[[], PolicySet],
    produce: Callable[[str, bytes, bytes], Awaitable[None]],
    customers: Any,
) -> None:
    """`in_force`: the policy set in force now, whose categories the page offers (a set
    published while the worker runs shows at once)."""
    read_state = state_reader(customers)
    keys = LinkKeys.parse(settings.link_keys.get_secret_value()) if settings.link_keys else None
    updates = settings.topic(topics.PREFERENCE_UPDATES)

    def customer_of(view: View, request: Request, token: str) -> str | Response:
        """The link's customer, or the page that says why there is none (in the browser's
        language: nobody is known to take one from)."""
        words = words_for(*_accepted(request))
        if keys is None:
            body = f"<p>{escape(words.unavailable)}</p>"
            return _page(view, 503, words, words.unavailable_title, body)
        try:
            return keys.read(token, datetime.now(UTC))
        except BadLink as exc:
            log.warning("page.bad_link", why=exc.reason)
            expired = exc.reason == "expired"
            status = 410 if expired else 403
            title = words.expired_title if expired else words.invalid_title
            text = words.expired if expired else words.invalid
            return _page(view, status, words, title, f'<p class="problem">{escape(text)}</p>')

    @app.page("/p/{token}")
    class PreferencePage(View):
        async def get(self, request: Request, token: str) -> Response:
            customer = customer_of(self, request, token)
            if not isinstance(customer, str):
                return customer
            remote = await forwarded(app, self, request, customer, customers)
            if remote is not None:
                return remote
            state = read_state(customer) or CustomerState(customer_id=customer)
            policy = in_force()
            locale = state.preferences.locale or state.profile.locale or policy.default_locale
            words = words_for(locale)
            body = _form(policy, state.preferences, token, words)
            return _page(self, 200, words, words.form_title, body)

        async def post(self, request: Request, token: str) -> Response:
            customer = customer_of(self, request, token)
            if not isinstance(customer, str):
                return customer
            try:
                form = await bodies.form(request)
            except bodies.BadBody as exc:
                log.warning("page.unreadable_form", why=exc.reason)
                words = words_for(*_accepted(request))
                body = f'<p class="problem" role="alert">{escape(words.invalid)}</p>'
                return _page(self, exc.status, words, words.invalid_title, body)
            words = words_for(form.get("lang"))  # the language the form was shown in
            policy = in_force()
            try:
                update = _update(policy, form)
            except ValidationError as exc:
                problems = "; ".join(e["msg"] for e in exc.errors(include_url=False))
                said = escape(words.not_saved.format(problems))
                body = f'<p class="problem" role="alert">{said}</p>'
                body += _form(policy, None, token, words)
                return _page(self, 400, words, words.form_title, body)
            event_id = f"page-{uuid.uuid4().hex}"
            value = preferences_event(event_id, customer, update, "preference_page")
            await produce(updates, customer.encode(), value)
            log.info("page.preferences_saved", customer_id=customer, event_id=event_id)
            body = _saved(update, token, words)
            return _page(self, 200, words, words.saved_title, body)


def _update(policy: PolicySet, form: Any) -> PreferencesUpdate:
    """The form as a full set of choices: what is not ticked is off."""
    ticked_channels = set(form.getall("channel", []))
    ticked_categories = set(form.getall("category", []))
    start, end = form.get("quiet_start", "").strip(), form.get("quiet_end", "").strip()
    quiet: dict[str, str] | None = {"start": start, "end": end} if start or end else None
    return PreferencesUpdate.model_validate(
        {
            "preferred_channel": form.get("preferred_channel") or None,
            "channels": {c: c in ticked_channels for c in CHANNELS},
            "categories": {
                name: name in ticked_categories
                for name, category in policy.categories.items()
                if not category.required
            },
            "quiet_hours": quiet,
        }
    )


def _form(policy: PolicySet, prefs: Preferences | None, token: str, words: Words) -> str:
    prefs = prefs or Preferences()
    preferred = prefs.preferred_channel or ""
    radios = "".join(
        f'<label><input type="radio" name="preferred_channel" value="{value}"'
        f"{' checked' if value == preferred else ''}> {escape(text)}</label>"
        for value, text in [("", words.no_preference), *words.channels.items()]
    )
    switched = prefs.channels or {}
    channels = "".join(
        f'<label><input type="checkbox" name="channel" value="{c}"'
        f"{'' if switched.get(c) is False else ' checked'}> {escape(words.channels[c])}</label>"
        for c in CHANNELS
    )
    chosen = prefs.categories or {}
    rows = []
    for name, category in sorted(policy.categories.items()):
        label = escape(name.replace("-", " ").replace("_", " ").capitalize())
        if category.required:
            rows.append(
                f'<label><input type="checkbox" checked disabled aria-describedby="why-{name}">'
                f" {label}</label>"
                f'<p class="why" id="why-{name}">{escape(words.required_why)}</p>'
            )
            continue
        on = (
            chosen.get(name) is True
            if category.consent == "opt_in"
            else chosen.get(name) is not False
        )
        rows.append(
            f'<label><input type="checkbox" name="category" value="{escape(name)}"'
            f"{' checked' if on else ''}> {label}</label>"
        )
    quiet = prefs.quiet_hours
    start, end = (quiet.start, quiet.end) if quiet else ("", "")
    return f"""
<form method="post" action="/p/{escape(token)}">
  <input type="hidden" name="lang" value="{words.lang}">
  <fieldset><legend>{escape(words.preferred_legend)}</legend>{radios}</fieldset>
  <fieldset><legend>{escape(words.channels_legend)}</legend>{channels}</fieldset>
  <fieldset><legend>{escape(words.categories_legend)}</legend>{"".join(rows)}</fieldset>
  <fieldset><legend>{escape(words.quiet_legend)}</legend>
    <p class="why">{escape(words.quiet_why)}</p>
    <label for="quiet_start">{escape(words.quiet_from)}</label>
    <input type="time" id="quiet_start" name="quiet_start" value="{escape(start)}">
    <label for="quiet_end">{escape(words.quiet_until)}</label>
    <input type="time" id="quiet_end" name="quiet_end" value="{escape(end)}">
  </fieldset>
  <button type="submit">{escape(words.save)}</button>
</form>"""


def _saved(update: Preferences, token: str, words: Words) -> str:
    channels = update.channels or {}
    on = [words.channels[c] for c in CHANNELS if channels.get(c)]
    off = [words.channels[c] for c in CHANNELS if channels.get(c) is False]
    categories = update.categories or {}
    topics_off = [n for n, v in sorted(categories.items()) if v is False]
    preferred = words.channels.get(update.preferred_channel or "", words.no_preference)
    quiet = update.quiet_hours
    items = [
        words.saved_preferred.format(preferred),
        words.saved_channels.format(", ".join(on) or words.none_of_them),
        *([words.switched_off.format(", ".join(off))] if off else []),
        *([words.no_messages.format(", ".join(topics_off))] if topics_off else []),
        words.quiet_hours.format(quiet.start, quiet.end) if quiet else words.no_quiet_hours,
    ]
    listed = "".join(f"<li>{escape(i)}</li>" for i in items)
    return (
        f'<p class="notice" role="status">{escape(words.saved_notice)}</p><ul>{listed}</ul>'
        f'<p><a href="/p/{escape(token)}">{escape(words.change_again)}</a></p>'
    )


def _page(view: View, status: int, words: Words, title: str, body: str) -> Response:
    html = f"""<!doctype html>
<html lang="{words.lang}">
<head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body><main><h1>{escape(title)}</h1>{body}</main></body>
</html>"""
    return view.html(html, status=status)
