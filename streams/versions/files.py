"""A set's files into a publication, and a publication back into files.

A worker judges and renders a published set from a directory, exactly as it
does the set it started with, so the checks and the templates' loader have one
way in. Each version unpacks to a directory named after it: the same content
always lands in the same place, and a worker restarting on its data directory
writes it again rather than trusting what a crash may have left half-written.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from policies.loader import SUFFIXES
from schemas.published import PublishedPolicy


def pack(policies: Path, templates: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The YAML files of `policies` by name, and every file under `templates` by its path."""
    yaml_files = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(policies.iterdir())
        if p.is_file() and p.suffix in SUFFIXES
    }
    template_files = {
        p.relative_to(templates).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(templates.rglob("*"))
        if p.is_file()
    }
    return yaml_files, template_files


def unpack(published: PublishedPolicy, root: Path) -> Path:
    """Write the set under `root/<version>/`; its templates under `templates/` there."""
    target = root / published.version
    staging = root / f".{published.version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for name, text in published.policies.items():
        _write(staging, name, text)
    for name, text in published.templates.items():
        _write(staging / "templates", name, text)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _write(folder: Path, name: str, text: str) -> None:
    """One file, refused if its name would leave the folder (the topic is not trusted)."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"a published file name leaves its folder: {name!r}")
    path = folder.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
