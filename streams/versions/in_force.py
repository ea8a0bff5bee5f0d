"""A worker's versions: the set it started with, and each published one it accepted.

Intake decides every input under `at(now)`; dispatch renders each request with
the templates of the version that chose its step (`templates_for`). A published
set is judged here as `policy check` judges it before it is put in force: one
that does not load, whose templates do not render, or whose content is not the
version it claims, is refused, logged and shown in `/metrics`, and the version
in force stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import structlog

from channels.base import Message
from channels.templates import Templates
from policies.model import PolicySet
from policies.versions import PolicyVersions
from schemas.notifications import NotificationRequest
from schemas.published import PublishedPolicy
from streams.runtime.metrics import Metrics
from streams.versions.checks import check_set
from streams.versions.files import unpack

log = structlog.get_logger(__name__)


class Versions:
    def __init__(
        self, first: PolicySet, templates: Templates, root: Path, metrics: Metrics | None = None
    ) -> None:
        """`root`: where published sets are unpacked (under the worker's data directory)."""
        self.policies = PolicyVersions(first)
        self.root = root
        self._templates: dict[str, Templates] = {first.version: templates}
        self.refused: dict[str, str] = {}
        """Versions this worker would not put in force, with the first reason."""
        if metrics is not None:
            metrics.gauges(
                "clarion_policy_version",
                "1 for the version in force now (state=in_force), the last one published "
                "(state=latest) and each one refused (state=refused, kept out of force).",
                ("version", "state"),
                self._states,
            )

    def at(self, now: datetime) -> PolicySet:
        return self.policies.at(now)

    def in_force_now(self) -> PolicySet:
        """The set in force on the wall clock: what the API and the preference page offer."""
        return self.at(datetime.now(UTC))

    def templates_for(self, version: str) -> Templates:
        """The templates of `version`; those of the latest set when this worker does not
        know it (a request from a version refused here, or from before a restart that
        lost nothing but the unpacked files)."""
        found = self._templates.get(version)
        return found if found is not None else self._templates[self.policies.latest.version]

    def apply(self, published: PublishedPolicy) -> bool:
        """Put a published set in force from its instant; False, logged, when refused."""
        known = self.policies.known(published.version)
        if known is not None:  # a rollback: judged and unpacked when first published
            self.policies.add(published.effective_at, known)
            self._added(published)
            return True
        try:
            folder = unpack(published, self.root)
        except (OSError, ValueError) as exc:
            return self._refuse(published, f"its files cannot be written here: {exc}")
        try:
            checked = check_set(folder, folder / "templates")
        except Exception as exc:  # whatever a set holds, the worker goes on with its own
            log.exception("policy.version_unjudged", version=published.version)
            return self._refuse(published, f"it could not be checked: {type(exc).__name__}")
        if checked.policy is None or checked.errors:
            return self._refuse(published, "; ".join(checked.errors[:5]))
        if checked.policy.version != published.version:
            return self._refuse(
                published,
                f"its files make version {checked.policy.version} here: the publisher and "
                "this worker run different Clarion versions",
            )
        self.policies.add(published.effective_at, checked.policy)
        self._templates[published.version] = Templates(
            folder / "templates", checked.policy.default_locale
        )
        self._added(published)
        return True

    def _added(self, published: PublishedPolicy) -> None:
        log.info(
            "policy.version_added",
            version=published.version,
            effective_at=published.effective_at.isoformat(),
            author=published.author,
            rollback_of=published.rollback_of,
        )

    def _refuse(self, published: PublishedPolicy, why: str) -> bool:
        self.refused.setdefault(published.version, why)
        log.error(
            "policy.version_refused",
            version=published.version,
            effective_at=published.effective_at.isoformat(),
            author=published.author,
            why=why,
            in_force=self.policies.latest.version,
        )
        return False

    def _states(self) -> dict[tuple[str, ...], float]:
        states: dict[tuple[str, ...], float] = {
            (self.at(datetime.now(UTC)).version, "in_force"): 1.0,
            (self.policies.latest.version, "latest"): 1.0,
        }
        states.update({(version, "refused"): 1.0 for version in self.refused})
        return states

    def render(
        self, request: NotificationRequest, links: Mapping[str, str] | None = None
    ) -> Message:
        """The request in the words of the version that chose its step."""
        return self.templates_for(request.policy_version).render(request, links)
