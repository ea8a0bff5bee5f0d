"""Each role's pod as deploy/k8s renders it, run as processes on Apache Kafka (issue 21).

No cluster here: the init container's command and the worker's run with the pod's
environment (its settings ConfigMap and env), on the policies ConfigMap laid out as kubelet
mounts it, and the probes are asked on the port and paths the pod names. What differs from a
cluster is listed in `LOCAL`.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from policies.loader import load_directory
from streams.cli.demo import start_worker, stop_worker
from streams.cli.main import main
from streams.kafka.broker import free_port
from streams.runtime.settings import Settings
from tests.apache_kafka import ApacheKafka
from tests.conftest import KAFKA_SETTINGS, POLICIES, wait_ready
from tests.kubernetes import ROLES, mounted_like_kubelet, one, pod, render, worker

pytestmark = pytest.mark.integration


def local(kafka: ApacheKafka, tmp_path: Path, role: str) -> dict[str, Any]:
    """What this machine must change of a pod's settings, and nothing else."""
    return {
        "kafka_bootstrap": kafka.bootstrap,  # the overlay names MSK-like brokers
        "kafka_security_protocol": "PLAINTEXT",  # with SASL_SSL and a Secret, there
        "replication_factor": 1,  # one node here, three there
        "channel_sms": "sandbox",  # no Twilio or SendGrid credentials here
        "channel_voice": "sandbox",
        "channel_email": "sandbox",
        "data_dir": tmp_path / f"{role}-data",  # the volume claim
        "outbox_path": tmp_path / "outbox.jsonl",
        "web_port": free_port(),  # the pod has 6066 to itself
        **KAFKA_SETTINGS,
    }


def test_each_role_starts_as_its_pod_says_and_answers_its_probes(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    rendered = render()
    settings_map = one(rendered, "ConfigMap", "clarion-settings")["data"]
    policies = one(rendered, "ConfigMap", "clarion-policies")["data"]
    run = uuid.uuid4().hex[:8]
    procs = []
    try:
        for role in ROLES:
            container = worker(rendered, role)
            env = settings_map | {e["name"]: e["value"] for e in container["env"]}
            values: dict[str, Any] = {k.removeprefix("CLARION_").lower(): v for k, v in env.items()}
            values |= local(apache_kafka, tmp_path, role)
            values |= {"app_id": f"k8s-{run}", "topic_prefix": f"k8s{run}."}
            # The init container, its arguments as written, its volumes here on local folders.
            [init] = pod(rendered, role)["spec"]["initContainers"]
            volumes = {v: tmp_path / role / v for v in ("policy-files", "policies", "tmp")}
            here = {m["mountPath"]: str(volumes[m["name"]]) for m in init["volumeMounts"]}
            mounted_like_kubelet(policies, volumes["policy-files"])
            assert main([here.get(arg, arg) for arg in init["args"]]) == 0
            # The worker reads its policies where the init container left them.
            reads = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert reads[env["CLARION_POLICIES_DIR"]] == "policies"
            values["policies_dir"] = volumes["policies"]
            settings = Settings(**values)
            assert settings.role == role and settings.partitions == 12
            with (tmp_path / f"{role}.log").open("wb") as log:
                proc = start_worker(settings, log)
            procs.append(proc)
            wait_ready(settings, proc)
            for probe in ("livenessProbe", "readinessProbe"):
                path = container[probe]["httpGet"]["path"]
                url = f"http://127.0.0.1:{settings.web_port}{path}"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    assert answer.status == 200, probe
            loaded = [
                json.loads(line)
                for line in (tmp_path / f"{role}.log").read_text().splitlines()
                if '"worker.policies"' in line
            ]
            assert loaded and loaded[0]["policies"] == str(volumes["policies"])
            bundled = load_directory(POLICIES)
            assert loaded[0]["escalations"] == len(bundled.escalations)
            assert loaded[0]["version"] == bundled.version, "the same YAML and templates"
        # SIGTERM, as kubelet stops a pod: each worker is out well within its grace period.
        for role, proc in zip(ROLES, procs, strict=True):
            grace = pod(rendered, role)["spec"]["terminationGracePeriodSeconds"]
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(grace) == 0
            assert time.monotonic() - began < grace / 2, role
    finally:
        for proc in procs:
            stop_worker(proc)
