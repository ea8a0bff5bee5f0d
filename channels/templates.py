"""Rendering message templates: Jinja2 in a sandbox, strict about undefined names.

Layout: ``<dir>/<template>/<channel>.<locale>.j2``. A missing locale falls back
to the default locale; a missing template or variable is an error, never an
empty message. An email template's first line is ``Subject: ...``. An email may
also have an HTML part, ``email.<locale>.html.j2`` (autoescaped); without one,
the HTML part is the plain text, escaped, in paragraphs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from channels.base import Message
from schemas.notifications import NotificationRequest

VOICEMAIL = "voicemail"
"""The template every voice call needs: what an answering machine may hear (no account details)."""


class TemplateMissing(LookupError):
    """No file for this template, channel and locale (nor the default locale)."""


class RenderError(ValueError):
    """The template exists but could not be rendered with this request's data."""


class Templates:
    def __init__(self, directory: Path, default_locale: str = "en") -> None:
        self.directory = directory
        self.default_locale = default_locale
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
        )
        self._html_env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=True, keep_trailing_newline=False
        )
        self._cache: dict[Path, Any] = {}
        self._paths: dict[tuple[str, str, str], Path] = {}
        self._html_paths: dict[Path, Path | None] = {}

    def path_for(self, template: str, channel: str, locale: str) -> Path:
        """The file for this template, channel and locale, found once and then remembered.

        A worker reads its templates once, as it loads its policy once: a changed
        template takes a restart (a deploy). Looking again on every message was a
        third of the cost of a render (py-spy).
        """
        found = self._paths.get((template, channel, locale))
        if found is not None:
            return found
        for candidate in dict.fromkeys([locale, locale.split("-")[0], self.default_locale]):
            path = self.directory / template / f"{channel}.{candidate}.j2"
            if path.is_file():
                self._paths[template, channel, locale] = path
                return path
        raise TemplateMissing(
            f"no template {template}/{channel}.{locale}.j2 "
            f"(nor .{self.default_locale}) under {self.directory}"
        )

    def available(self) -> frozenset[tuple[str, str, str]]:
        """Every (template, channel, locale) with a file: what `policy check` resolves names by."""
        if not self.directory.is_dir():
            return frozenset()
        found = set()
        for path in self.directory.glob("*/*.*.j2"):
            if path.name.endswith(".html.j2"):
                continue  # the HTML part of an email template, not a template of its own
            channel, locale = path.name.removesuffix(".j2").split(".", 1)
            found.add((path.parent.name, channel, locale))
        return frozenset(found)

    def render(
        self, request: NotificationRequest, links: Mapping[str, str] | None = None
    ) -> Message:
        """`links` (`preferences`: the signed page link) are `links.*` in a template."""
        links = dict(links or {})
        path = self.path_for(request.template, request.channel, request.locale)
        text = self._render_path(path, request, links, self._env)
        voicemail = html = None
        if request.channel == "voice":
            voicemail = self._render(VOICEMAIL, request, links).strip()
        subject = None
        if request.channel == "email":
            first, _, rest = text.partition("\n")
            if not first.startswith("Subject:"):
                raise RenderError(
                    f"{path.relative_to(self.directory)}: an email template starts "
                    "with a 'Subject: ...' line"
                )
            subject, text = first.removeprefix("Subject:").strip(), rest.lstrip("\n")
            # The HTML part in the same language as the text part, if there is one.
            html_path = self._html_path(path)
            if html_path is not None:
                html = self._render_path(html_path, request, links, self._html_env).strip()
        return Message(
            notification_id=request.notification_id,
            customer_id=request.customer_id,
            channel=request.channel,
            recipient=request.recipient,
            body=text.strip(),
            subject=subject,
            locale=request.locale,
            category=request.category,
            template=request.template,
            voicemail=voicemail,
            unsubscribe_url=links.get("preferences"),
            account_id=request.account_id,
            html=html,
        )

    def _html_path(self, text_path: Path) -> Path | None:
        if text_path not in self._html_paths:
            html = text_path.with_name(text_path.name.removesuffix(".j2") + ".html.j2")
            self._html_paths[text_path] = html if html.is_file() else None
        return self._html_paths[text_path]

    def _render(self, template: str, request: NotificationRequest, links: dict[str, str]) -> str:
        path = self.path_for(template, request.channel, request.locale)
        return self._render_path(path, request, links, self._env)

    def _render_path(
        self, path: Path, request: NotificationRequest, links: dict[str, str], env: Any
    ) -> str:
        try:
            compiled = self._cache.get(path)
            if compiled is None:
                compiled = env.from_string(path.read_text(encoding="utf-8"))
                self._cache[path] = compiled
            return str(compiled.render(**request.context, channel=request.channel, links=links))
        except TemplateError as exc:  # a syntax error too: the template never compiled
            raise RenderError(f"{path.relative_to(self.directory)}: {exc}") from exc
