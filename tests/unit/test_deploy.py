"""What deploy/ ships is checked (issue 21): the Compose file against the Compose
specification's JSON Schema, and every setting it and its env file name against the
worker's settings. (`make lint` runs hadolint on deploy/Dockerfile.)"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from streams.runtime.settings import Settings
from tests.conftest import ROOT

COMPOSE = ROOT / "deploy" / "compose"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"


def compose() -> dict[str, object]:
    loaded = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_compose_file_follows_the_compose_specification() -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_the_workers_run_apart_on_kafka_with_their_policies_read_only() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    roles = {name: s["environment"]["CLARION_ROLE"] for name, s in services.items() if "build" in s}
    assert roles == {"intake": "intake", "dispatch": "dispatch"}
    for name in roles:
        assert "../policies:/etc/clarion/policies:ro" in services[name]["volumes"]
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert services[name]["env_file"] == [{"path": "./clarion.env", "required": False}]
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["intake:6066", "dispatch:6066"]


def test_every_setting_deploy_names_is_one_the_worker_reads() -> None:
    known = {f"CLARION_{name.upper()}" for name in Settings.model_fields}
    named: set[str] = set()
    for service in compose()["services"].values():  # type: ignore[attr-defined]
        named |= {k for k in service.get("environment", {}) if k.startswith("CLARION_")}
    for line in (COMPOSE / "clarion.env.example").read_text().splitlines():
        text = line.lstrip("# ")
        if text.startswith("CLARION_"):
            name, _, value = text.partition("=")
            named.add(name)
            assert line.startswith("#") or value == "", f"{name}: a value in a committed file"
    assert named and named <= known, sorted(named - known)
    assert "clarion.env" in (ROOT / ".gitignore").read_text()
    assert (
        not (COMPOSE / "clarion.env").exists()
        or "deploy/compose/clarion.env" in (ROOT / ".gitignore").read_text()
    )


def test_the_image_runs_the_worker_as_no_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2, "two stages"
    assert "USER 10001:10001" in dockerfile and "HEALTHCHECK" in dockerfile
    assert 'ENTRYPOINT ["clarion"]' in dockerfile and 'CMD ["worker"]' in dockerfile
    assert Path(ROOT / ".dockerignore").read_text().count(".venv") == 1
