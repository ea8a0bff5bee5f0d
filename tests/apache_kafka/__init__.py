"""Apache Kafka itself, one KRaft node on free loopback ports, for the tests (issue 20).

The jars come from Maven Central (`pom.xml` beside this file: `kafka_2.13`,
`kafka-tools` and a logging binding, 94 jars and 54 MB for 4.1.1), fetched once
by `mvn dependency:copy-dependencies` into `~/.cache/clarion/apache-kafka-<version>`
(`CLARION_KAFKA_JARS` names another folder). The node's storage is formatted
with `kafka.tools.StorageTool` under a temporary directory, and the broker
(`kafka.Kafka`) is stopped on success, on an exception, on Ctrl-C and, on
Linux, when the Python process that started it dies, as `EmbeddedBroker` does
for Tansu.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.kafka_gateway import Pki

from streams.kafka.broker import (
    BrokerError,
    die_with_parent,
    free_port,
    metadata_ok,
    stop_process,
)

VERSION = "4.1.1"
HERE = Path(__file__).parent
JARS_ENV = "CLARION_KAFKA_JARS"


def jars() -> Path:
    """The folder of the broker's jars, fetched with Maven the first time."""
    folder = Path(
        os.environ.get(JARS_ENV) or Path.home() / ".cache" / "clarion" / f"apache-kafka-{VERSION}"
    )
    if any(folder.glob(f"kafka_2.13-{VERSION}.jar")):
        return folder
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Apache Kafka's jars need Maven: install it (make test does)")
    done = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(HERE / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={folder}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not any(folder.glob(f"kafka_2.13-{VERSION}.jar")):
        raise BrokerError(f"mvn could not fetch Apache Kafka {VERSION}:\n{done.stdout[-3000:]}")
    return folder


def cluster_id() -> str:
    """A random KRaft cluster id that the storage tool's argument parser accepts.

    One id in 64 starts with "-", and `StorageTool format -t -Cw...` then reads
    it as an option (a CI run failed so); Kafka's own `Uuid.randomUuid` draws
    again in that case, and so do we.
    """
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


class ApacheKafka:
    """``with ApacheKafka() as kafka: kafka.bootstrap`` (one node, broker and controller).

    A node of a `KafkaCluster` (tests/apache_kafka/cluster.py) is one of these
    too: the cluster formats its nodes with one id and one quorum, and kills and
    relaunches them on their log dirs.
    """

    def __init__(
        self,
        start_timeout: float = 60.0,
        *,
        pki: Pki | None = None,
        scram_users: dict[str, str] | None = None,
        node_id: int = 1,
        replicas: int = 1,
    ) -> None:
        """With `pki`, two more listeners: `ssl_port` (TLS, a client certificate required)
        and `sasl_port` (SASL_SSL, SCRAM-SHA-512 for `scram_users`, made at format time).
        `replicas`: the replication factor of the internal topics and the default one."""
        self.node_id = node_id
        self.port = free_port()
        self.controller_port = free_port()
        self.voters = f"{node_id}@127.0.0.1:{self.controller_port}"
        self._pki, self._users = pki, scram_users or {}
        self._replicas = replicas
        self.ssl_port = free_port() if pki else None
        self.sasl_port = free_port() if pki else None
        self._start_timeout = start_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="clarion-kafka-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir / "server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ApacheKafka:
        self.format(cluster_id())
        self.launch()
        self.wait_ready(brokers=1)
        return self

    def format(self, cluster: str) -> None:
        """Write the config and format the log dir for `cluster` (the quorum is `voters`)."""
        config = self._write_config()
        scram = [
            arg
            for name, password in self._users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]
        classpath = str(jars() / "*")
        self._java(
            classpath, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", config, *scram
        )

    def launch(self) -> None:
        """Start the broker on its formatted log dir (again, after `kill` or `terminate`)."""
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self._command(str(jars() / "*"), "kafka.Kafka", str(self._config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, brokers: int) -> None:
        """Until this node answers Metadata listing `brokers` live brokers."""
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                break
            if metadata_ok("127.0.0.1", self.port, brokers=brokers):
                return
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise BrokerError(f"Apache Kafka node {self.node_id} did not start:\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no clean shutdown; the log dir stays."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(20)

    def terminate(self, timeout: float = 30.0) -> None:
        """A clean shutdown (SIGTERM); the log dir stays for `launch`."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        self.terminate(timeout)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def tool(self, main: str, *args: str) -> str:
        """What one of Kafka's own command-line tools prints, run against this node."""
        done = subprocess.run(
            self._command(str(jars() / "*"), main, "--bootstrap-server", self.bootstrap, *args),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise BrokerError(f"{main} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    @property
    def _config(self) -> Path:
        return self._dir / "server.properties"

    def _write_config(self) -> str:
        (self._dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self._dir / 'kafka.log'}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=%d %p %c: %m%n\n"
        )
        path = self._config
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        secured: list[str] = []
        if self._pki is not None:
            listeners += [
                f"SSL://127.0.0.1:{self.ssl_port}",
                f"SASL_SSL://127.0.0.1:{self.sasl_port}",
            ]
            protocols += ["SSL:SSL", "SASL_SSL:SASL_SSL"]
            secured = self._secured_config(self._pki)
        path.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={self.voters}",
                    f"listeners={','.join(listeners)},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={','.join(listeners)}",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={','.join(protocols)}",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self._dir / 'data'}",
                    "num.partitions=1",
                    f"default.replication.factor={self._replicas}",
                    f"min.insync.replicas={min(2, self._replicas)}",
                    f"offsets.topic.replication.factor={self._replicas}",
                    "offsets.topic.num.partitions=4",
                    f"transaction.state.log.replication.factor={self._replicas}",
                    f"transaction.state.log.min.isr={min(2, self._replicas)}",
                    f"share.coordinator.state.topic.replication.factor={self._replicas}",
                    f"share.coordinator.state.topic.min.isr={min(2, self._replicas)}",
                    "group.initial.rebalance.delay.ms=0",
                    # A killed broker is fenced, and its partitions led elsewhere, after
                    # 3 s without a heartbeat (Kafka's default 9 s) to keep the tests short.
                    "broker.session.timeout.ms=3000",
                    "broker.heartbeat.interval.ms=500",
                    *secured,
                    "",
                ]
            )
        )
        return str(path)

    def _secured_config(self, pki: Pki) -> list[str]:
        """Kafka's own TLS (PEM key store and trust store) and SCRAM on the extra listeners."""
        keystore = self._dir / "server-keystore.pem"
        keystore.write_text(pki.server_key.read_text() + pki.server_cert.read_text())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={pki.ca}",
            "listener.name.ssl.ssl.client.auth=required",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
        ]

    def _command(self, classpath: str, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{self._dir / 'log4j.properties'}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _java(self, classpath: str, main: str, *args: str) -> None:
        done = subprocess.run(
            self._command(classpath, main, *args), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise BrokerError(f"{main} {' '.join(args[:1])} failed:\n{done.stdout}{done.stderr}")
