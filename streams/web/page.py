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
from datetime import UTC, datetime
from html import escape
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from pydantic import ValidationError

from policies.model import PolicySet
from policies.state import CustomerState
from schemas.customer import Preferences
from schemas.types import CHANNELS
from streams import topics
from streams.settings import Settings
from streams.web.api import PreferencesUpdate, preferences_event
from streams.web.links import BadLink, LinkKeys
from streams.web.reads import forwarded, state_reader

log = structlog.get_logger(__name__)

CHANNEL_NAMES = {"sms": "Text message (SMS)", "email": "Email", "voice": "Phone call"}

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

_BAD_LINK = {
    "expired": (
        410,
        "This link has expired",
        "Links to this page work for a limited time. "
        "Use the link in the most recent message we sent you, or contact us.",
    ),
}
_INVALID = (
    403,
    "This link is not valid",
    "The link may have been changed or cut short. "
    "Use the link exactly as it appears in a message we sent you.",
)


def install(
    app: faust.App,
    settings: Settings,
    policy: PolicySet,
    produce: Callable[[str, bytes, bytes], Awaitable[None]],
    customers: Any,
) -> None:
    read_state = state_reader(customers)
    keys = LinkKeys.parse(settings.link_keys.get_secret_value()) if settings.link_keys else None
    updates = settings.topic(topics.PREFERENCE_UPDATES)

    def customer_of(view: View, token: str) -> str | Response:
        if keys is None:
            return _page(view, 503, "Not available", "<p>This page is not set up yet.</p>")
        try:
            return keys.read(token, datetime.now(UTC))
        except BadLink as exc:
            log.warning("page.bad_link", why=exc.reason)
            status, title, text = _BAD_LINK.get(exc.reason, _INVALID)
            return _page(view, status, title, f'<p class="problem">{escape(text)}</p>')

    @app.page("/p/{token}")
    class PreferencePage(View):
        async def get(self, request: Request, token: str) -> Response:
            customer = customer_of(self, token)
            if not isinstance(customer, str):
                return customer
            remote = await forwarded(app, self, request, customer, customers)
            if remote is not None:
                return remote
            state = read_state(customer) or CustomerState(customer_id=customer)
            return _page(self, 200, "How we contact you", _form(policy, state.preferences, token))

        async def post(self, request: Request, token: str) -> Response:
            customer = customer_of(self, token)
            if not isinstance(customer, str):
                return customer
            form = await request.post()  # type: ignore[attr-defined]
            try:
                update = _update(policy, form)
            except ValidationError as exc:
                problems = "; ".join(e["msg"] for e in exc.errors(include_url=False))
                body = f'<p class="problem" role="alert">Not saved: {escape(problems)}</p>'
                return _page(self, 400, "How we contact you", body + _form(policy, None, token))
            event_id = f"page-{uuid.uuid4().hex}"
            value = preferences_event(event_id, customer, update, "preference_page")
            await produce(updates, customer.encode(), value)
            log.info("page.preferences_saved", customer_id=customer, event_id=event_id)
            return _page(self, 200, "Your choices are saved", _saved(policy, update, token))


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


def _form(policy: PolicySet, prefs: Preferences | None, token: str) -> str:
    prefs = prefs or Preferences()
    preferred = prefs.preferred_channel or ""
    radios = "".join(
        f'<label><input type="radio" name="preferred_channel" value="{value}"'
        f"{' checked' if value == preferred else ''}> {escape(text)}</label>"
        for value, text in [("", "No preference"), *CHANNEL_NAMES.items()]
    )
    switched = prefs.channels or {}
    channels = "".join(
        f'<label><input type="checkbox" name="channel" value="{c}"'
        f"{'' if switched.get(c) is False else ' checked'}> {escape(CHANNEL_NAMES[c])}</label>"
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
                f'<p class="why" id="why-{name}">Required by law: we must send these notices. '
                "Your channel choices above still apply; if none is left we send a letter.</p>"
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
  <fieldset><legend>Preferred way to reach you</legend>{radios}</fieldset>
  <fieldset><legend>Ways we may contact you</legend>{channels}</fieldset>
  <fieldset><legend>What we contact you about</legend>{"".join(rows)}</fieldset>
  <fieldset><legend>Quiet hours (your local time)</legend>
    <p class="why">We will not contact you between these times. Leave both empty for none.</p>
    <label for="quiet_start">From</label>
    <input type="time" id="quiet_start" name="quiet_start" value="{escape(start)}">
    <label for="quiet_end">Until</label>
    <input type="time" id="quiet_end" name="quiet_end" value="{escape(end)}">
  </fieldset>
  <button type="submit">Save my choices</button>
</form>"""


def _saved(policy: PolicySet, update: Preferences, token: str) -> str:
    channels = update.channels or {}
    on = [CHANNEL_NAMES[c] for c in CHANNELS if channels.get(c)]
    off = [CHANNEL_NAMES[c] for c in CHANNELS if channels.get(c) is False]
    categories = update.categories or {}
    topics_off = [n for n, v in sorted(categories.items()) if v is False]
    preferred = CHANNEL_NAMES.get(update.preferred_channel or "", "No preference")
    quiet = update.quiet_hours
    items = [
        f"Preferred: {preferred}",
        f"We may contact you by: {', '.join(on) or 'none of the above'}",
        *([f"Switched off: {', '.join(off)}"] if off else []),
        *([f"No messages about: {', '.join(topics_off)}"] if topics_off else []),
        f"Quiet hours: {quiet.start} to {quiet.end}" if quiet else "Quiet hours: none",
    ]
    listed = "".join(f"<li>{escape(i)}</li>" for i in items)
    return (
        '<p class="notice" role="status">We saved your choices. They apply to the next '
        f"message we send.</p><ul>{listed}</ul>"
        f'<p><a href="/p/{escape(token)}">Change them again</a></p>'
    )


def _page(view: View, status: int, title: str, body: str) -> Response:
    html = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body><main><h1>{escape(title)}</h1>{body}</main></body>
</html>"""
    return view.html(html, status=status)
