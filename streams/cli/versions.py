"""`clarion policy publish` and `clarion policy versions`: a policy change without a restart.

A set is judged as `policy check` judges it and published only when it passes;
every worker then puts it in force at the instant the publication names. A
rollback (`--activate VERSION`) publishes an earlier set again, later.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from schemas.published import PublishedPolicy
from streams.app import templates_dir
from streams.kafka import topics
from streams.runtime.settings import Settings
from streams.versions import catalog
from streams.versions.checks import check_set
from streams.versions.files import pack

LEAD = timedelta(seconds=30)
"""How far ahead of the wall clock a publication takes effect by default: every worker
reads it well before any input is decided under it."""


def default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def publish_command(
    settings: Settings,
    directory: Path,
    templates: Path | None,
    effective_at: datetime | None,
    author: str,
    strict: bool,
    lenient: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    folder = templates_dir(directory, templates)
    checked = check_set(directory, folder, lenient)
    for line in checked.errors + checked.warnings:
        err.write(f"{line}\n")
    if checked.policy is None or checked.refused(strict):
        why = "errors" if checked.policy is None or checked.errors else "warnings (--strict)"
        err.write(f"{directory}: {why}; nothing published\n")
        return 1
    policies, files = pack(directory, folder)
    now = datetime.now(UTC)
    published = PublishedPolicy(
        version=checked.policy.version,
        effective_at=effective_at or now + LEAD,
        published_at=now,
        author=author,
        policies=policies,
        templates=files,
    )
    return await _publish(settings, published, out, err)


async def activate_command(
    settings: Settings,
    version: str,
    effective_at: datetime | None,
    author: str,
    out: TextIO,
    err: TextIO,
) -> int:
    """Publish an earlier version again: a rollback, with no files from disk."""
    entries = await catalog.read(settings)
    earlier = [e.published for e in entries if e.published.version == version]
    if not earlier:
        err.write(
            f"no version {version} on {settings.topic(topics.POLICIES)}; "
            "`clarion policy versions` lists what was published\n"
        )
        return 1
    now = datetime.now(UTC)
    effective_at = effective_at or now + LEAD
    replaced = _in_force([e.published for e in entries], effective_at)
    published = earlier[-1].model_copy(
        update={
            "effective_at": effective_at,
            "published_at": now,
            "author": author,
            "rollback_of": replaced.version if replaced is not None else None,
        }
    )
    return await _publish(settings, published, out, err)


async def versions_command(settings: Settings, out: TextIO) -> int:
    entries = await catalog.read(settings)
    now = datetime.now(UTC)
    current = _in_force([e.published for e in entries], now)
    out.write(
        f"{'offset':>6}  {'version':<16}  {'effective at':<25}  {'published at':<25}  "
        f"{'author':<12}  state\n"
    )
    for entry in entries:
        p = entry.published
        state = "in force" if p is current else ("pending" if p.effective_at > now else "replaced")
        if p.rollback_of is not None:
            state += f" (rollback of {p.rollback_of})"
        out.write(
            f"{entry.offset:>6}  {p.version:<16}  {_when(p.effective_at):<25}  "
            f"{_when(p.published_at):<25}  {p.author:<12}  {state}\n"
        )
    if current is None:
        out.write("in force: each worker's CLARION_POLICIES_DIR (nothing published has effect)\n")
    return 0


async def _publish(settings: Settings, published: PublishedPolicy, out: TextIO, err: TextIO) -> int:
    try:
        offset = await catalog.publish(settings, published)
    except catalog.PublishRefused as exc:
        err.write(f"{published.version}: {exc}; nothing published\n")
        return 1
    out.write(
        f"published {published.version} ({len(published.policies)} policy files, "
        f"{len(published.templates)} template files) at offset {offset} of "
        f"{settings.topic(topics.POLICIES)}; in force from {_when(published.effective_at)}"
        f"{f', replacing {published.rollback_of}' if published.rollback_of else ''}\n"
    )
    return 0


def _in_force(published: list[PublishedPolicy], now: datetime) -> PublishedPolicy | None:
    """The publication in force at `now`: the last effective by then (ties: published last)."""
    effective = [(p.effective_at, i) for i, p in enumerate(published) if p.effective_at <= now]
    return published[max(effective)[1]] if effective else None


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
