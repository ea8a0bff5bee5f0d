"""A policy directory in a Kubernetes ConfigMap, and back (docs/deploy.md, "Kubernetes").

A ConfigMap is flat: a key is a file name, and `templates/<name>/<file>` cannot
be one. `kustomization` lists every file of a policy directory under a flat key
(`templates__<name>__<file>`) in a kustomize `Kustomization` written beside
them, so the directory the ops team edits is itself what kustomize turns into
a ConfigMap, with a content hash in its name: a changed policy rolls the
workers, and a worker still running keeps the ConfigMap it started on.
`unpack` puts a mounted ConfigMap's files back where a worker reads them (a
pod's init container runs it) and checks the set the way the worker will.
"""

from __future__ import annotations

import re
from pathlib import Path

from policies.loader import SUFFIXES

KUSTOMIZATION = "Kustomization"
"""kustomize reads this name as well as kustomization.yaml; the policy loader reads only *.yaml."""

SEPARATOR = "__"
MAX_BYTES = 1_000_000
"""What the API server takes in one ConfigMap (1 MiB), less room for its metadata."""

_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class ConfigMapError(ValueError):
    """A directory that cannot be a ConfigMap, or a ConfigMap that cannot be read back."""


def files_of(directory: Path) -> list[Path]:
    """The files a worker reads, relative: the policy files, then everything under templates/."""
    policies = sorted(
        p.relative_to(directory)
        for p in directory.iterdir()
        if p.is_file() and p.suffix in SUFFIXES
    )
    templates = directory / "templates"
    found = (
        sorted(p.relative_to(directory) for p in templates.rglob("*") if p.is_file())
        if templates.is_dir()
        else []
    )
    return policies + [p for p in found if not any(part.startswith(".") for part in p.parts)]


def key_for(relative: Path) -> str:
    """`templates/fraud-alert/sms.en.j2` as the key `templates__fraud-alert__sms.en.j2`."""
    for part in relative.parts:
        if SEPARATOR in part or not _KEY.fullmatch(part):
            raise ConfigMapError(
                f"{relative}: a ConfigMap key takes only letters, digits, '-', '_' and '.', "
                f"and '{SEPARATOR}' separates folders; rename '{part}'"
            )
    return SEPARATOR.join(relative.parts)


def kustomization(directory: Path, name: str) -> str:
    """The `Kustomization` that makes `directory` the ConfigMap `name`."""
    files = files_of(directory)
    if not files:
        raise ConfigMapError(f"{directory}: no policy files")
    size = sum((directory / f).stat().st_size for f in files)
    if size > MAX_BYTES:
        raise ConfigMapError(
            f"{directory}: {size:,} bytes; a ConfigMap holds at most {MAX_BYTES:,}"
        )
    lines = [
        "# Written by `clarion policy configmap`: this policy directory as the ConfigMap the",
        '# workers\' init container unpacks (docs/deploy.md, "Kubernetes"). Write it again',
        "# after adding or removing a file; `--check` says whether it is up to date.",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "configMapGenerator:",
        f"  - name: {name}",
        "    files:",
    ]
    lines += [f"      - {key_for(f)}={f.as_posix()}" for f in files]
    return "\n".join(lines) + "\n"


def unpack(source: Path, target: Path) -> list[Path]:
    """Write the files of a mounted ConfigMap at `source` to their places under `target`.

    A mounted ConfigMap also holds kubelet's `..data` links and a timestamped
    folder; names starting with a dot are those, and are left out.
    """
    written: list[Path] = []
    for entry in sorted(source.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        parts = entry.name.split(SEPARATOR)
        if any(not _KEY.fullmatch(part) or part in {".", ".."} for part in parts):
            raise ConfigMapError(f"{entry.name}: not a key `clarion policy configmap` writes")
        place = target.joinpath(*parts)
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(entry.read_bytes())
        written.append(place.relative_to(target))
    if not written:
        raise ConfigMapError(f"{source}: no files (is the ConfigMap mounted here?)")
    return written
