"""A set's files into a publication, and a publication back into files.

A worker judges and renders a published set from a directory, exactly as it
does the set it started with, so the checks and the templates' loader have one
way in. Each version unpacks to a directory named after it, and a version is its
content: the same content always lands in the same place, once.
"""

from __future__ import annotations

import shutil
import tempfile
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
    """Write the set under `root/<version>/`; its templates under `templates/` there.

    Written whole in a folder of its own, then renamed into place in one step, so the
    folder of a version is complete or absent, whatever crashed, and two workers on one
    data directory may unpack the same version at once: the second finds it there.
    """
    target = root / published.version
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{published.version}.", dir=root))
    try:
        for name, text in published.policies.items():
            _write(staging, name, text)
        for name, text in published.templates.items():
            _write(staging / "templates", name, text)
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write(folder: Path, name: str, text: str) -> None:
    """One file, refused if its name would leave the folder (the topic is not trusted)."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"a published file name leaves its folder: {name!r}")
    path = folder.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
