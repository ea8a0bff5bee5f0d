"""The docs a reader outside this repository relies on stay whole and true to the code."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import yaml

from schemas.events import EVENT_TYPES
from streams.cli import policy as policy_cli
from tests.conftest import POLICIES, ROOT

DOCS = ROOT / "docs"


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def test_nothing_in_the_repository_points_outside_it() -> None:
    # Built from parts, so this file does not name what it looks for.
    sibling = "../" + "shared"
    found = []
    for path in _tracked_files():
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if sibling in line
        ]
    assert found == []


def test_every_doc_a_doc_names_exists() -> None:
    named = set()
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        named |= set(re.findall(r"docs/[a-z-]+\.md", path.read_text()))
    assert named, "no doc names another"
    assert sorted(name for name in named if not (ROOT / name).exists()) == []


def test_the_producers_contract_lists_every_event_type() -> None:
    text = (DOCS / "events.md").read_text()
    table = text.split("## Types (v1)")[1].split("\n## ")[0]
    listed = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            listed |= set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", row.split("|")[1]))
    assert listed == set(EVENT_TYPES)


def test_the_language_reference_examples_load_and_pass_a_strict_check(tmp_path: Path) -> None:
    text = (DOCS / "policy-language.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    parsed = [yaml.safe_load(block) for block in blocks if "{...}" not in block]
    merged: dict[str, object] = {"version": 1}
    for part in parsed:
        if "when" in part:  # the conditions' examples, not a file's section
            continue
        merged |= part
    assert {"categories", "contact_windows", "frequency_caps", "escalations"} <= set(merged)
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump(merged))
    out, err = io.StringIO(), io.StringIO()
    code = policy_cli.check(tmp_path, POLICIES / "templates", True, out, err)
    assert code == 0, err.getvalue()
    assert "0 errors, 0 warnings" in out.getvalue()
