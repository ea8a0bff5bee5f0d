"""deploy/k8s, rendered by kustomize as a platform team would, and checked (issue 21).

Every object is validated against Kubernetes' own schemas (kubernetes-validate, offline,
strict: an unknown field fails), then against what the worker expects of it: its settings,
its port and probes, its data directory, and the policies it will load.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from streams.cli import configmap
from streams.cli.main import main
from streams.runtime.settings import Settings, SettingsError
from tests.conftest import ROOT
from tests.kubernetes import ROLES, mounted_like_kubelet, one, pod, render, worker

POLICIES = ROOT / "deploy" / "policies"
VERSIONS = ("1.29.0", "1.37.0")
"""The oldest and the newest Kubernetes the validator's schemas cover that we check against."""
ENV_EXAMPLE = "deploy/compose/clarion.env.example"
"""The variables of the Secret `clarion-secrets` (docs/deploy.md), as of Compose's env file."""


@pytest.fixture
def rendered() -> list[dict[str, Any]]:
    return render()


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_kubernetes(rendered: list[dict[str, Any]], version: str) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validation_catches_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(one(rendered, "StatefulSet", "clarion-intake")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_three_workers_a_stateful_set_per_role_each_with_its_own_volume(
    rendered: list[dict[str, Any]],
) -> None:
    replicas = {r: one(rendered, "StatefulSet", f"clarion-{r}")["spec"]["replicas"] for r in ROLES}
    assert replicas == {"intake": 2, "dispatch": 1}
    data_dir = "/var/lib/clarion/data"
    for role in ROLES:
        sts = one(rendered, "StatefulSet", f"clarion-{role}")
        [claim] = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        container = worker(rendered, role)
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["CLARION_ROLE"] == role and env["CLARION_DATA_DIR"] == data_dir
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[data_dir] == claim["metadata"]["name"]
        assert sts["spec"]["serviceName"] == f"clarion-{role}-pods"
        assert one(rendered, "Service", f"clarion-{role}-pods")["spec"]["clusterIP"] == "None"


def test_the_two_roles_differ_only_in_their_role(rendered: list[dict[str, Any]]) -> None:
    intake, dispatch = (one(rendered, "StatefulSet", f"clarion-{r}") for r in ROLES)
    del intake["spec"]["replicas"], dispatch["spec"]["replicas"]
    as_dispatch = yaml.safe_dump(intake).replace("intake", "dispatch")
    assert as_dispatch == yaml.safe_dump(dispatch)


def test_probes_port_and_scrape_annotations_are_the_workers(
    rendered: list[dict[str, Any]],
) -> None:
    port = Settings().web_port
    for role in ROLES:
        container = worker(rendered, role)
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        annotations = pod(rendered, role)["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_a_stopped_worker_has_time_to_commit(rendered: list[dict[str, Any]]) -> None:
    s = Settings()
    for role in ROLES:
        grace = pod(rendered, role)["spec"]["terminationGracePeriodSeconds"]
        assert grace > s.commit_interval_s + s.provider_timeout_s + s.session_timeout_s / 2


def test_memory_is_sized_from_the_benchmark(rendered: list[dict[str, Any]]) -> None:
    """610 MB of RSS at a million open cases on RocksDB (docs/performance.md, "Memory")."""
    mib = {"Mi": 1, "Gi": 1024}
    for role in ROLES:
        resources = worker(rendered, role)["resources"]
        limit = resources["limits"]["memory"]
        assert int(limit[:-2]) * mib[limit[-2:]] * 2**20 >= 610e6 * 1.5
        assert "cpu" not in resources["limits"] and resources["requests"]["cpu"] == "1"


def test_a_disruption_budget_per_role(rendered: list[dict[str, Any]]) -> None:
    for role in ROLES:
        budget = one(rendered, "PodDisruptionBudget", f"clarion-{role}")["spec"]
        assert budget["maxUnavailable"] == 1
        sts = one(rendered, "StatefulSet", f"clarion-{role}")
        assert budget["selector"] == sts["spec"]["selector"]
        assert budget["selector"]["matchLabels"]["app.kubernetes.io/component"] == role


def test_only_the_web_port_is_let_in_and_only_public_paths_are_routed(
    rendered: list[dict[str, Any]],
) -> None:
    policy = one(rendered, "NetworkPolicy", "clarion-workers")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "clarion"}
    assert policy["policyTypes"] == ["Ingress"]
    assert [rule["ports"] for rule in policy["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
    routes = {
        (p["path"], p["backend"]["service"]["name"])
        for rule in one(rendered, "Ingress", "clarion")["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert routes == {
        ("/webhooks/twilio/sms", "clarion-dispatch"),
        ("/webhooks/twilio/status", "clarion-dispatch"),
        ("/webhooks/sendgrid/events", "clarion-dispatch"),
        ("/api/v1/customers", "clarion-intake"),
        ("/api/v1/openapi.json", "clarion-intake"),
        ("/p", "clarion-intake"),
    }
    served = "".join(p.read_text() for p in (ROOT / "streams" / "web").glob("*.py"))
    for path, _ in routes:
        assert f'"{path}' in served, f"{path}: no such route in streams/web"


def test_settings_are_the_workers_and_secrets_stay_out_of_git(
    rendered: list[dict[str, Any]],
) -> None:
    known = {f"CLARION_{name.upper()}" for name in Settings.model_fields}
    secret = {
        f"CLARION_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }
    settings = one(rendered, "ConfigMap", "clarion-settings")["data"]
    assert set(settings) <= known, sorted(set(settings) - known)
    assert not set(settings) & secret
    # What the ConfigMap lacks, the Secret holds: only variables clarion.env lists.
    held = set(re.findall(r"CLARION_[A-Z_]+", (ROOT / ENV_EXAMPLE).read_text()))
    given = {k.removeprefix("CLARION_").lower(): v for k, v in settings.items()}
    for _ in range(len(held)):
        try:
            filled = Settings.from_env(**given)
            break
        except SettingsError as exc:
            lacking = set(re.findall(r"CLARION_[A-Z_]+", str(exc)))
            assert lacking and lacking <= held, sorted(lacking - held)
            given |= {name.removeprefix("CLARION_").lower(): "x" for name in lacking}
    else:
        pytest.fail("the example overlay's settings never loaded, whatever the Secret held")
    assert filled.kafka_security_protocol == "SASL_SSL" and filled.channel_email == "sendgrid"
    assert not [o for o in rendered if o["kind"] == "Secret"]
    for role in ROLES:
        sources = worker(rendered, role)["envFrom"]
        assert {"secretRef": {"name": "clarion-secrets"}} in sources
        names = {e["name"] for e in worker(rendered, role)["env"]}
        assert names <= known


def test_the_policies_config_map_unpacks_to_the_example_policies(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    cm = one(rendered, "ConfigMap", "clarion-policies")
    mounted = mounted_like_kubelet(cm["data"], tmp_path / "mount")
    assert main(["policy", "unpack", str(mounted), str(tmp_path / "policies")]) == 0
    unpacked = {p.relative_to(tmp_path / "policies") for p in (tmp_path / "policies").rglob("*")}
    wanted = {p.relative_to(POLICIES) for p in POLICIES.rglob("*")} - {Path("Kustomization")}
    assert unpacked == wanted
    for relative in configmap.files_of(POLICIES):
        assert (tmp_path / "policies" / relative).read_bytes() == (POLICIES / relative).read_bytes()
    for role in ROLES:
        volumes = {v["name"]: v for v in pod(rendered, role)["spec"]["volumes"]}
        assert volumes["policy-files"]["configMap"]["name"] == cm["metadata"]["name"]


def test_the_example_policies_kustomization_is_up_to_date() -> None:
    assert main(["policy", "configmap", str(POLICIES), "--check"]) == 0


def test_a_name_a_config_map_cannot_hold_is_refused_with_the_fix() -> None:
    assert configmap.key_for(Path("templates/a-b/sms.en.j2")) == "templates__a-b__sms.en.j2"
    for bad in ("templates/a__b/sms.en.j2", "templates/a b/sms.en.j2", "templates/ü/x.j2"):
        with pytest.raises(configmap.ConfigMapError, match="rename"):
            configmap.key_for(Path(bad))


def test_unpack_refuses_a_key_that_would_leave_its_folder(tmp_path: Path) -> None:
    (tmp_path / "mount").mkdir()
    (tmp_path / "mount" / "templates__..__x.yaml").write_text("version: 1\n")
    assert main(["policy", "unpack", str(tmp_path / "mount"), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "x.yaml").exists()
    assert main(["policy", "unpack", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1


def test_a_policy_set_that_does_not_load_is_not_packed_nor_unpacked_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "policies"
    shutil.copytree(POLICIES, broken)
    (broken / "Kustomization").unlink()
    (broken / "50-broken.yaml").write_text("version: 1\nescalations: {x: {steps: nope}}\n")
    assert main(["policy", "configmap", str(broken)]) == 1
    assert not (broken / "Kustomization").exists()
    assert "not written" in capsys.readouterr().err
    # The same set in a ConfigMap: the init container exits 1 and says why.
    flat = tmp_path / "mount"
    flat.mkdir()
    for relative in configmap.files_of(broken):
        (flat / configmap.key_for(relative)).write_bytes((broken / relative).read_bytes())
    assert main(["policy", "unpack", str(flat), str(tmp_path / "out")]) == 1
    assert "50-broken.yaml" in capsys.readouterr().err


def test_a_stale_kustomization_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / "templates" / "offer" / "sms.fr.j2").write_text("Offre. STOP pour arrêter.\n")
    assert main(["policy", "configmap", str(copy), "--check"]) == 1
    assert "not up to date" in capsys.readouterr().err
    assert main(["policy", "configmap", str(copy)]) == 0
    assert (
        "templates__offer__sms.fr.j2=templates/offer/sms.fr.j2"
        in (copy / "Kustomization").read_text()
    )
    assert main(["policy", "configmap", str(copy), "--check"]) == 0
