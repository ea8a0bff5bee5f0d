"""The wheel works outside the checkout (issue 21, part 2).

Built from this tree and installed, with the `demo` extra and nothing else, in a
virtual environment of its own, it runs from a directory that is not the
checkout: `clarion policy check` finds the bundled example policies and
templates as package data, `clarion demo` runs the stories, and `clarion
worker` comes up on a broker and stops cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker, free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv holding only the wheel and its dependencies."""
    where = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves build/ in the tree it builds, and a stale
    # build/lib there would go into the next wheel.
    source = where / "src"
    skip = shutil.ignore_patterns(".*", "build", "dist", "var", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    wheels = where / "dist"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(wheels),
        str(source),
    ]
    subprocess.run(build, check=True, timeout=300)
    [wheel] = wheels.glob("clarion-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"{wheel}[demo]"], check=True, timeout=600)
    return venv / "bin"


def outside(tmp_path: Path) -> dict[str, str]:
    """An environment that cannot reach the checkout: no PYTHONPATH, no CLARION_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLARION_", "PYTHON"))}
    env["HOME"] = str(tmp_path)
    return env


def clarion(
    installed: Path, tmp_path: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The installed `clarion`, run outside the checkout."""
    return subprocess.run(
        [str(installed / "clarion"), *args],
        cwd=tmp_path,
        env=outside(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_installed_wheel_checks_the_bundled_policies(installed: Path, tmp_path: Path) -> None:
    done = clarion(installed, tmp_path, "policy", "check", timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert "site-packages/streams/bundled/policies: 10 escalations" in last
    assert "0 errors, 0 warnings" in last
    assert str(ROOT) not in done.stdout


def test_the_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    done = clarion(installed, tmp_path, "demo", "--workdir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    assert "104 decisions (27 messages sent), 4 dead-letters" in done.stdout


def test_the_installed_wheel_runs_a_worker(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = {
            **outside(tmp_path),
            "CLARION_KAFKA_BOOTSTRAP": broker.bootstrap,
            "CLARION_WEB_PORT": str(port),
            "CLARION_DATA_DIR": str(tmp_path / "data"),
            "CLARION_OUTBOX_PATH": str(tmp_path / "outbox.jsonl"),
            "CLARION_SESSION_TIMEOUT_S": "2",
            "CLARION_HEARTBEAT_INTERVAL_S": "0.5",
            "CLARION_FETCH_MAX_WAIT_MS": "10",
        }
        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [str(installed / "clarion"), "worker"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=log,
            )
            try:
                ready = wait_ready(port, worker)
            finally:
                worker.send_signal(signal.SIGTERM)
                code = worker.wait(timeout=30)
    assert ready, (tmp_path / "worker.log").read_text()[-2000:]
    assert code == 0
    assert "site-packages/streams/bundled/policies" in (tmp_path / "worker.log").read_text()


def wait_ready(port: int, worker: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False
