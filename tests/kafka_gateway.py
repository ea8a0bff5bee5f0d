"""A TLS and SASL front door to the embedded broker, as a bank's Kafka has one.

Tansu 0.6 takes only plain connections here: its `--cert` cannot be combined
with `--key`, and a broker started with `--authentication` refuses the
`tansu user create` that would give it a user. So the security tests put
this gateway in front of it and have the broker advertise the gateway's
address: every connection a client makes, bootstrap or not, goes through it.

The gateway does what a broker does at the door. It terminates TLS with a
certificate signed by a test CA (and asks for a client certificate when told
to). With `users`, it answers the SASL handshake and `SaslAuthenticate`
itself (PLAIN, and SCRAM-SHA-256/512 as RFC 5802 has the server's side),
refuses any other request before them, and checks the password. After
that it only copies bytes. The clients on the other side are the real ones:
aiokafka and Faust, configured by `streams.runtime.security`.

With `refuse_produce_to`, the gateway also stands in for a broker whose ACLs
deny writes to some topics: it relays frame by frame, and answers a Produce
request that writes to one of them with TOPIC_AUTHORIZATION_FAILED for every
partition of the request, in turn with the broker's answers (the hole a bank's
cluster has when the dead-letter topic's ACL was forgotten). The requests and
answers are read and written with aiokafka's own protocol classes.

`Pki` makes the certificates with `cryptography`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from aiokafka.protocol import produce
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PRODUCE, _API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 0, 18, 17, 36
_TOPIC_AUTHORIZATION_FAILED = 29
_UNSUPPORTED_SASL_MECHANISM, _SASL_AUTHENTICATION_FAILED, _ILLEGAL_SASL_STATE = 33, 58, 34


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, folder: Path, name: str = "test") -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
        ca = (
            _builder(ca_name, ca_name, ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        paths = {"ca": folder / f"{name}-ca.pem"}
        paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for role in ("server", "client"):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {role}")])
            builder = _builder(subject, ca_name, key)
            if role == "server":
                where = x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                )
                builder = builder.add_extension(where, critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            paths[f"{role}_cert"] = folder / f"{name}-{role}.pem"
            paths[f"{role}_key"] = folder / f"{name}-{role}-key.pem"
            paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            paths[f"{role}_key"].write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cls(**paths)

    def server_context(self, *, client_certificates: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if client_certificates:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


class KafkaGateway:
    """``with KafkaGateway(port, upstream_port, tls=..., users=...) as gateway: ...``"""

    def __init__(
        self,
        port: int,
        upstream_port: int,
        *,
        tls: ssl.SSLContext | None,
        users: dict[str, str] | None = None,
        refuse_produce_to: frozenset[str] = frozenset(),
    ) -> None:
        self.port, self._upstream, self._tls = port, upstream_port, tls
        self.users = users
        self.refuse_produce_to = refuse_produce_to
        """Topics a Produce request may not write to (TOPIC_AUTHORIZATION_FAILED)."""
        self.refused_produce: list[str] = []
        """The topics of every Produce request refused, in order."""
        """Who may connect, by password (SASL/PLAIN); None: no SASL, TLS only."""
        self.authenticated: list[str] = []
        """The user of every connection that passed SASL, in order."""
        self.refused: list[str] = []
        """Why each refused connection was refused."""
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> KafkaGateway:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        started.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self._tls
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._open:
            writer.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        up_in, up_out = await asyncio.open_connection("127.0.0.1", self._upstream)
        self._open |= {client_out, up_out}
        try:
            if self.users is None or await self._authenticate(client_in, client_out, up_in, up_out):
                if self.refuse_produce_to:
                    await self._relay(client_in, client_out, up_in, up_out)
                else:
                    await asyncio.gather(_copy(client_in, up_out), _copy(up_in, client_out))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for writer in (client_out, up_out):
                writer.close()
                self._open.discard(writer)

    async def _authenticate(
        self,
        client_in: asyncio.StreamReader,
        client_out: asyncio.StreamWriter,
        up_in: asyncio.StreamReader,
        up_out: asyncio.StreamWriter,
    ) -> bool:
        """SASL before anything else; ApiVersions may come first, as Kafka allows."""
        users = self.users or {}
        exchange: _Plain | _Scram | None = None
        while True:
            frame = await _read_frame(client_in)
            api_key, version, correlation = struct.unpack(">hhi", frame[:8])
            if api_key == _API_VERSIONS:
                up_out.write(struct.pack(">i", len(frame)) + frame)
                client_out.write(_framed(await _read_frame(up_in)))
            elif api_key == _SASL_HANDSHAKE:
                mechanism = _string(frame, _after_client_id(frame))[0]
                exchange = _Plain(users) if mechanism == "PLAIN" else None
                if mechanism.startswith("SCRAM-SHA-") and mechanism in MECHANISMS:
                    exchange = _Scram(users, mechanism)
                error = 0 if exchange is not None else _UNSUPPORTED_SASL_MECHANISM
                offered = b"".join(_str(m.encode()) for m in MECHANISMS)
                body = struct.pack(">ihi", correlation, error, len(MECHANISMS)) + offered
                client_out.write(_framed(body))
            elif api_key == _SASL_AUTHENTICATE and exchange is not None:
                start = _after_client_id(frame)
                (size,) = struct.unpack(">i", frame[start : start + 4])
                reply, verdict, user = exchange.step(frame[start + 4 : start + 4 + size])
                failed = verdict is False
                message = b"Authentication failed: invalid username or password" if failed else None
                body = struct.pack(">ih", correlation, _SASL_AUTHENTICATION_FAILED if failed else 0)
                body += _str(message) + struct.pack(">i", len(reply)) + reply
                if version >= 1:
                    body += struct.pack(">q", 0)
                client_out.write(_framed(body))
                await client_out.drain()
                if verdict is True:
                    self.authenticated.append(user)
                    return True
                if failed:
                    self.refused.append(f"{user}: wrong password")
                    return False
            else:
                self.refused.append(f"request {api_key} before SASL authentication")
                return False
            await client_out.drain()

    async def _relay(
        self,
        client_in: asyncio.StreamReader,
        client_out: asyncio.StreamWriter,
        up_in: asyncio.StreamReader,
        up_out: asyncio.StreamWriter,
    ) -> None:
        """Request by request, answers in order. A Produce request that writes to a refused
        topic goes on without it, and the broker's answer gets the refusal added, as a
        broker answers an ACL per topic; one that writes to nothing else is answered here."""
        answers: asyncio.Queue[_Pending] = asyncio.Queue()

        async def requests() -> None:
            while True:
                frame = await _read_frame(client_in)
                pending, forward = self._split(frame)
                if forward is not None:
                    up_out.write(_framed(forward))
                    await up_out.drain()
                if pending is not None:
                    await answers.put(pending)

        async def responses() -> None:
            while True:
                pending = await answers.get()
                answer = pending.local
                if answer is None:
                    answer = pending.merged(await _read_frame(up_in))
                client_out.write(_framed(answer))
                await client_out.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.gather(*tasks)
        finally:  # one side closed: the other is waiting on it, and ends here
            for task in tasks:
                task.cancel()

    def _split(self, frame: bytes) -> tuple[_Pending | None, bytes | None]:
        """What to answer (None: nothing, acks=0) and what to send on (None: nothing)."""
        api_key, version, correlation = struct.unpack(">hhi", frame[:8])
        answered = not _unanswered(frame)
        if api_key != _PRODUCE:
            return (_Pending() if answered else None), frame
        struct_type = getattr(produce, f"ProduceRequest_v{version}")
        start = _after_client_id(frame)
        request = struct_type.decode(frame[start:])
        refused = [(tp, parts) for tp, parts in request.topics if tp in self.refuse_produce_to]
        if not refused:
            return (_Pending() if answered else None), frame
        self.refused_produce.append(",".join(topic for topic, _ in request.topics))
        extra = 0 if version < 2 else 1 if version < 5 else 2  # timestamp, log start offset
        denied = [
            (topic, [(p, _TOPIC_AUTHORIZATION_FAILED, -1, *([-1] * extra)) for p, _ in parts])
            for topic, parts in refused
        ]
        kept = [(tp, parts) for tp, parts in request.topics if tp not in self.refuse_produce_to]
        response_type = struct_type.RESPONSE_TYPE
        if not kept:
            fields = [denied] + ([0] if version >= 1 else [])  # throttle time
            local = struct.pack(">i", correlation) + response_type(*fields).encode()
            return (_Pending(local=local) if answered else None), None
        values = [getattr(request, name) for name in struct_type.SCHEMA.names]
        values[struct_type.SCHEMA.names.index("topics")] = kept
        forward = frame[:start] + struct_type.SCHEMA.encode(values)
        return (_Pending(denied=denied, response=response_type) if answered else None), forward


@dataclass
class _Pending:
    """How one request is answered: here (`local`), or by the broker with `denied` added."""

    local: bytes | None = None
    denied: list[tuple[str, list[tuple[int, ...]]]] | None = None
    response: type | None = None

    def merged(self, answer: bytes) -> bytes:
        if not self.denied or self.response is None:
            return answer
        decoded = self.response.decode(answer[4:])
        values = [getattr(decoded, name) for name in self.response.SCHEMA.names]
        values[0] = list(values[0]) + self.denied  # topics come first in every version
        return answer[:4] + self.response.SCHEMA.encode(values)


MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""What the gateway offers in the SASL handshake."""

Step = tuple[bytes, bool | None, str]
"""What to answer, the verdict (None: the exchange goes on) and the user."""


class _Plain:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def step(self, data: bytes) -> Step:
        _, user, password = data.decode().split("\0")
        return b"", self._users.get(user) == password, user


class _Scram:
    """The server's side of RFC 5802: two round trips, the password never sent."""

    ITERATIONS = 4096

    def __init__(self, users: dict[str, str], mechanism: str) -> None:
        self._users = users
        self._name = "sha256" if mechanism.endswith("256") else "sha512"
        self._salt = secrets.token_bytes(16)
        self._user = ""
        self._client_first = self._server_first = self._nonce = ""

    def step(self, data: bytes) -> Step:
        if not self._server_first:  # client-first: n,,n=user,r=nonce
            self._client_first = data.decode().split(",", 2)[2]
            attrs = dict(pair.split("=", 1) for pair in self._client_first.split(","))
            self._user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            self._nonce = attrs["r"] + secrets.token_hex(12)
            salt = base64.b64encode(self._salt).decode()
            self._server_first = f"r={self._nonce},s={salt},i={self.ITERATIONS}"
            return self._server_first.encode(), None, self._user
        final = data.decode()  # client-final: c=biws,r=nonce,p=proof
        without_proof, _, proof = final.rpartition(",p=")
        auth = f"{self._client_first},{self._server_first},{without_proof}".encode()
        password = self._users.get(self._user)
        if password is None or f",r={self._nonce}" not in f",{without_proof}":
            return b"", False, self._user
        salted = hashlib.pbkdf2_hmac(self._name, password.encode(), self._salt, self.ITERATIONS)
        client_key = self._hmac(salted, b"Client Key")
        stored = hashlib.new(self._name, client_key).digest()
        signature = self._hmac(stored, auth)
        given = base64.b64decode(proof)
        recovered = bytes(a ^ b for a, b in zip(given, signature, strict=False))
        if hashlib.new(self._name, recovered).digest() != stored:
            return b"", False, self._user
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth)
        return b"v=" + base64.b64encode(server_signature), True, self._user

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._name).digest()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    finally:
        sink.close()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _unanswered(frame: bytes) -> bool:
    """A Produce request with acks=0: the broker sends nothing back."""
    api_key, version = struct.unpack(">hh", frame[:4])
    if api_key != _PRODUCE:
        return False
    at = _after_client_id(frame)
    if version >= 3:  # after the transactional id
        (size,) = struct.unpack(">h", frame[at : at + 2])
        at += 2 + max(size, 0)
    (acks,) = struct.unpack(">h", frame[at : at + 2])
    return acks == 0


def _framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _after_client_id(frame: bytes) -> int:
    """Where a v1 request header ends: api key, version, correlation id, client id."""
    (size,) = struct.unpack(">h", frame[8:10])
    return 10 + max(size, 0)


def _string(frame: bytes, at: int) -> tuple[str, int]:
    (size,) = struct.unpack(">h", frame[at : at + 2])
    return frame[at + 2 : at + 2 + size].decode(), at + 2 + size


def _str(value: bytes | None) -> bytes:
    return struct.pack(">h", -1) if value is None else struct.pack(">h", len(value)) + value
