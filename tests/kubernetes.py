"""deploy/k8s as kustomize renders it, and a ConfigMap as kubelet mounts it (tests only)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = Path(sys.executable).parent / "kustomize"
ROLES = ("intake", "dispatch")


def render(overlay: Path = K8S / "overlays" / "example") -> list[dict[str, Any]]:
    """Every object `kustomize build` makes of `overlay`."""
    assert KUSTOMIZE.exists(), "kustomize is missing: `make test` installs it (Go needed)"
    out = subprocess.run(
        [str(KUSTOMIZE), "build", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of `kind` whose name is `name`, or `name` and kustomize's hash."""
    hashed = re.compile(re.escape(name) + "(-[a-z0-9]{10})?")
    [found] = [o for o in objects if o["kind"] == kind and hashed.fullmatch(o["metadata"]["name"])]
    return found


def pod(objects: list[dict[str, Any]], role: str) -> dict[str, Any]:
    template: dict[str, Any] = one(objects, "StatefulSet", f"clarion-{role}")["spec"]["template"]
    return template


def worker(objects: list[dict[str, Any]], role: str) -> dict[str, Any]:
    [container] = pod(objects, role)["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def mounted_like_kubelet(data: dict[str, str], mount: Path) -> Path:
    """A ConfigMap volume as kubelet lays it out: keys are links into a timestamped folder."""
    stamped = mount / "..2026_12_05_07_00_00.000000001"
    stamped.mkdir(parents=True)
    for key, value in data.items():
        (stamped / key).write_text(value)
    (mount / "..data").symlink_to(stamped.name)
    for key in data:
        (mount / key).symlink_to(f"..data/{key}")
    return mount
