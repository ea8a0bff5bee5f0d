"""`make fuzz`: a seeded mix of valid and hostile inputs and malformed HTTP requests
against a live worker, then an accounting of what became of every one (issue 26).

Run: `make fuzz` (or `python -m tests.fuzz --inputs 10000 --http 200 --seed 1`).
One embedded broker and one `clarion worker` with every web endpoint configured.
Each input is produced with Kafka's default partitioner, keyed by its customer,
except those that test the key and the partition. Afterwards every topic is
read back: each hostile input must be dead-lettered and each valid one not;
the worker's `clarion_inputs_total` must count every input once (else it was
lost); no decision may name a refused input or a request never produced.
`tests/integration/test_fuzz.py` runs a smaller seed in `make test` and fails
on any loss, crash, phantom row, leak or 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from schemas.notifications import NotificationRequest
from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from streams.web.links import LinkKeys
from tests import samples
from tests.conftest import metrics, wait_ready

PUBLIC = "https://clarion.example"
TOKEN = "fuzz-twilio-token"
API_KEY = "fuzz-api-key-0000000000"
LINK_KEYS = "k1:" + "f" * 32


@dataclass
class Input:
    """One message produced, what it should become, and where it landed."""

    kind: str  # valid | hostile | duplicate
    label: str
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    event_id: str | None = None
    offset: int = -1


@dataclass
class Accounting:
    produced: Counter[str] = field(default_factory=Counter)
    applied: int = 0
    decided: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    lost: int = 0
    wrongly_refused: list[str] = field(default_factory=list)
    wrongly_applied: list[str] = field(default_factory=list)
    agent_crashes: int = 0
    phantom_rows: int = 0
    contacts_leaked: list[str] = field(default_factory=list)
    http: Counter[int] = field(default_factory=Counter)
    http_5xx: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    seconds: float = 0.0

    def table(self) -> str:
        rows = [
            ("inputs sent", f"{sum(self.produced.values()):,}  ({self._kinds()})"),
            ("applied", f"{self.applied:,}"),
            ("decided (ledger rows)", f"{self.decided:,}"),
            ("dead-lettered", f"{sum(self.dead_lettered.values()):,}"),
            *((f"  {code}", f"{n:,}") for code, n in sorted(self.dead_lettered.items())),
            ("duplicates dropped", f"{self.duplicates:,}"),
            ("lost", f"{self.lost:,}"),
            ("valid but refused", f"{len(self.wrongly_refused):,}"),
            ("hostile but applied", f"{len(self.wrongly_applied):,}"),
            ("agent crashes", f"{self.agent_crashes:,}"),
            ("phantom ledger rows", f"{self.phantom_rows:,}"),
            ("contacts leaked", f"{len(self.contacts_leaked):,}"),
            ("HTTP requests", f"{sum(self.http.values()):,}  ({self._statuses()})"),
            ("HTTP 5xx", f"{len(self.http_5xx):,}"),
            ("worker peak RSS", f"{self.peak_rss_mb:,.0f} MB"),
            ("wall time", f"{self.seconds:,.1f} s"),
        ]
        return "\n".join(f"{name:<24}{value}" for name, value in rows) + "\n"

    def _kinds(self) -> str:
        return ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.produced.items()))

    def _statuses(self) -> str:
        return ", ".join(f"{status} {n}" for status, n in sorted(self.http.items()))

    def clean(self) -> bool:
        return not (
            self.lost
            or self.wrongly_refused
            or self.wrongly_applied
            or self.agent_crashes
            or self.phantom_rows
            or self.contacts_leaked
            or self.http_5xx
        )


# -- the inputs ---------------------------------------------------------------------


def make_inputs(settings: Settings, rng: random.Random, count: int) -> list[Input]:
    """About 60% valid (profiles first, then events of those customers), 40% hostile."""
    events = settings.topic(topics.ACCOUNT_EVENTS)
    made: list[Input] = []
    customers = max(1, count // 12)
    clock = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for n in range(customers):
        made.append(_valid(events, _profile(n, clock)))
    while len(made) < count:
        clock += timedelta(minutes=rng.randint(1, 30))
        if rng.random() < 0.6:
            made.append(_valid(events, _event(rng, rng.randrange(customers), clock, len(made))))
            if rng.random() < 0.03:  # a producer's retry
                again = made[-1]
                made.append(Input("duplicate", "retry", events, again.key, again.value))
        else:
            label = rng.choice(sorted(HOSTILE))
            if label == "huge" and sum(i.label == "huge" for i in made) >= 3:
                continue  # 800 kB each: a few are enough
            made.append(HOSTILE[label](settings, rng, len(made), clock))
    return made


def _profile(n: int, at: datetime) -> dict[str, Any]:
    return samples.event(
        "customer.profile.updated",
        event_id=f"fz-profile-{n}",
        customer_id=f"C-F{n}",
        account_id=None,
        occurred_at=at.isoformat(),
        data={
            "phones": [{"number": f"+1312555{n % 10_000:04d}", "sms_consent": True}],
            "emails": [{"address": f"fz{n}@example.com"}],
            "time_zones": ["America/Chicago"],
            "locale": "en",
        },
    )


VALID_TYPES = (
    "payment.missed",
    "transaction.large",
    "fraud.suspected",
    "payment.received",
    "customer.preferences.updated",
    "address.changed",
)


def _event(rng: random.Random, n: int, at: datetime, i: int) -> dict[str, Any]:
    kind = rng.choice(VALID_TYPES)
    return samples.event(
        kind,
        event_id=f"fz-{i}",
        customer_id=f"C-F{n}",
        account_id=f"A-F{n}",
        occurred_at=at.isoformat(),
    )


def _valid(topic: str, event: dict[str, Any]) -> Input:
    key = str(event["customer_id"]).encode()
    return Input(
        "valid", event["type"], topic, key, json.dumps(event).encode(), None, event["event_id"]
    )


Hostile = Callable[[Settings, random.Random, int, datetime], Input]


def _hostile(
    label: str, mutate: Callable[[dict[str, Any]], Any], key: bytes | None = None
) -> Hostile:
    """An event made wrong by `mutate`, which returns the new event or its bytes."""

    def make(settings: Settings, rng: random.Random, i: int, at: datetime) -> Input:
        event = samples.event(
            "transaction.large",
            event_id=f"fz-bad-{i}",
            customer_id=f"C-F{rng.randrange(50)}",
            account_id="A-1",
            occurred_at=at.isoformat(),
        )
        changed = mutate(event)
        value = changed if isinstance(changed, bytes) else json.dumps(changed).encode()
        cid = key if key is not None else str(event["customer_id"]).encode()
        topic = settings.topic(topics.ACCOUNT_EVENTS)
        return Input("hostile", label, topic, cid, value, None, f"fz-bad-{i}")

    return make


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mutate(event: dict[str, Any]) -> dict[str, Any]:
        target = event
        *parents, last = path.split(".")
        for name in parents:
            target = target[name]
        target[last] = value
        return event

    return mutate


def _raw(text: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda event: text


def _replace(old: bytes, new: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda event: json.dumps(event).encode().replace(old, new, 1)


def _wrong_partition(settings: Settings, rng: random.Random, i: int, at: datetime) -> Input:
    made = _hostile("wrong_partition", lambda e: e)(settings, rng, i, at)
    home = topics.home_partition(made.key or b"", settings.partitions)
    made.partition = (home + 1) % settings.partitions
    return made


def _null_key(settings: Settings, rng: random.Random, i: int, at: datetime) -> Input:
    made = _hostile("null_key", lambda e: e)(settings, rng, i, at)
    made.key = None
    made.partition = 0
    return made


def _bad_id(label: str, customer: str) -> Hostile:
    return _hostile(label, _set("customer_id", customer), key=customer.encode("utf-8", "replace"))


HOSTILE: dict[str, Hostile] = {
    "invalid_json": _hostile("invalid_json", _raw(b'{"event_id": "x", oops}')),
    "not_an_object": _hostile("not_an_object", _raw(b"[1, 2, 3]")),
    "unknown_type": _hostile("unknown_type", _set("type", "payment.mised")),
    "missing_field": _hostile(
        "missing_field", lambda e: {k: v for k, v in e.items() if k != "source"}
    ),
    "naive_time": _hostile("naive_time", _set("occurred_at", "2026-11-20T14:00:00")),
    "numeric_time": _hostile("numeric_time", _set("occurred_at", 1764000000)),
    "overflow_time": _hostile("overflow_time", _set("occurred_at", "0001-01-01T00:00:00+14:00")),
    "deep_data": _hostile("deep_data", _set("data.extra", _nested(20))),
    "deep_profile": _hostile(
        "deep_profile",
        lambda e: {**e, "type": "customer.profile.updated", "data": {"extra": _nested(250)}},
    ),
    "deep_json": _hostile("deep_json", _raw(b"[" * 10_000 + b"]" * 10_000)),
    "huge_integer": _hostile(
        "huge_integer", _replace(b'"data": {', b'"data": {"n": ' + b"7" * 5000 + b", ")
    ),
    "infinite": _hostile("infinite", _replace(b'"data": {', b'"data": {"n": 1e999, ')),
    "nan": _hostile("nan", _replace(b'"data": {', b'"data": {"n": NaN, ')),
    "lone_surrogate": _hostile(
        "lone_surrogate", _replace(b'"merchant": "', b'"merchant": "Shop\\ud800')
    ),
    "control_char": _hostile("control_char", _set("data.merchant", "Shop\x07")),
    "bidi_id": _bad_id("bidi_id", "C-\u202eF1"),
    "emoji_id": _bad_id("emoji_id", "C-F1\U0001f600"),
    "nul_id": _bad_id("nul_id", "C-F1\x00"),
    "utf16": _hostile("utf16", lambda e: json.dumps(e).encode("utf-16")),
    "bom": _hostile("bom", lambda e: b"\xef\xbb\xbf" + json.dumps(e).encode()),
    "too_large": _hostile("too_large", _set("data.merchant", "M" * 70_000)),
    "long_text": _hostile("long_text", _set("data.merchant", "M" * 9_000)),
    "huge": _hostile("huge", _set("data.merchant", "M" * 800_000)),
    "key_mismatch": _hostile("key_mismatch", lambda e: e, key=b"C-SOMEONE-ELSE"),
    "bad_phone": _hostile(
        "bad_phone",
        lambda e: {
            **e,
            "type": "customer.profile.updated",
            "data": {"phones": [{"number": "13125550199"}]},
        },
    ),
    "wrong_partition": _wrong_partition,
    "null_key": _null_key,
}


async def produce(settings: Settings, inputs: list[Input]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=2**21, linger_ms=5
    )
    await producer.start()
    try:
        sent = [
            await producer.send(i.topic, i.value, key=i.key, partition=i.partition) for i in inputs
        ]
        for made, delivery in zip(inputs, sent, strict=True):
            meta = await delivery
            made.partition, made.offset = meta.partition, meta.offset
    finally:
        await producer.stop()


# -- the malformed HTTP requests -----------------------------------------------------


def http_requests(
    rng: random.Random, count: int, signer: ec.EllipticCurvePrivateKey
) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers): unauthenticated, authenticated and signed, all wrong."""
    api = "/api/v1/customers/C-F1/preferences"
    good = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    token = LinkKeys.parse(LINK_KEYS).sign("C-F1", datetime.now(UTC) + timedelta(days=1))
    inf_token = base64.urlsafe_b64encode(b'{"c":"C-1","e":1e999,"k":"k1"}').decode().rstrip("=")

    def twilio(path: str, fields: dict[str, str]) -> tuple[str, str, bytes, dict[str, str]]:
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, fields)
        return "POST", path, urlencode(fields).encode(), {**form, "X-Twilio-Signature": signature}

    def sendgrid(body: bytes) -> tuple[str, str, bytes, dict[str, str]]:
        stamp = str(int(time.time()))
        signature = signer.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        return "POST", "/webhooks/sendgrid/events", body, headers

    deep = b"[" * 10_000 + b"]" * 10_000
    kinds: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("GET", api, b"", {}),
        ("GET", api, b"", {"X-Api-Key": "cl\u00e9-\u00fcnicode"}),
        ("GET", api, b"", {"Authorization": "Bearer \u043a\u043b\u044e\u0447"}),
        ("PUT", api, deep, good),
        ("PUT", api, b'{"locale": 1e999}', good),
        ("PUT", api, b'{"n": ' + b"9" * 5000 + b"}", good),
        ("PUT", api, b"\xff\xfe{}", good),
        ("PUT", api, b"[1]", good),
        ("GET", "/api/v1/customers/" + "C" * 5000 + "/preferences", b"", good),
        ("GET", "/api/v1/customers/C%00F1/preferences", b"", good),
        ("GET", f"/p/{inf_token}.AAAA", b"", {}),
        ("GET", "/p/%FF%FE.%00", b"", {}),
        ("GET", "/p/" + "A" * 5000, b"", {}),
        ("POST", f"/p/{token}", b"--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("POST", f"/p/{token}", b"lang=\xff\xfe", form),
        ("POST", f"/p/{token}", b"&".join(b"a=%d" % n for n in range(500)), form),
        (
            "POST",
            "/webhooks/twilio/sms",
            b"Body=caf\xe9&From=%2B1",
            {**form, "X-Twilio-Signature": "x"},
        ),
        ("POST", "/webhooks/twilio/status", b"%FF%FE=1", {**form, "X-Twilio-Signature": "x"}),
        ("POST", "/webhooks/twilio/sms", b"Body=STOP", form),
        twilio(
            "/webhooks/twilio/status?notification_id=n&channel=sms&customer_id=" + "C" * 5000,
            {"MessageSid": "SM1", "MessageStatus": "delivered"},
        ),
        twilio("/webhooks/twilio/sms", {"Body": "hi"}),
        sendgrid(deep),
        sendgrid(b'[{"event": "delivered", "n": 1e999}]'),
        sendgrid(b'{"not": "an array"}'),
        sendgrid(b"\xff\xfe"),
        ("POST", "/webhooks/sendgrid/events", b"[]", {"Content-Type": "application/json"}),
    ]
    return [rng.choice(kinds) for _ in range(count)]


async def send_http(
    base: str, requests: list[tuple[str, str, bytes, dict[str, str]]], acc: Accounting
) -> None:
    async with aiohttp.ClientSession() as session:
        for method, path, body, headers in requests:
            async with session.request(method, base + path, data=body, headers=headers) as answer:
                await answer.read()
                acc.http[answer.status] += 1
                if answer.status >= 500:
                    acc.http_5xx.append(f"{method} {path[:60]} -> {answer.status}")


# -- the run and its accounting ------------------------------------------------------


def fuzz_settings(bootstrap: str, workdir: Path, public_key_der: bytes, run: str) -> Settings:
    return demo_settings(
        bootstrap,
        workdir,
        app_id=f"clarion-fuzz-{run}",
        topic_prefix=f"fuzz{run}.",
        partitions=4,
        log_format="json",
        api_keys=API_KEY,
        link_keys=LINK_KEYS,
        public_url=PUBLIC,
        twilio_auth_token=TOKEN,
        sendgrid_webhook_public_key=base64.b64encode(public_key_der).decode(),
        # The sandbox takes any rate: the run is about intake, not the providers' limits.
        rate_sms_per_s=100_000,
        rate_voice_per_s=100_000,
        rate_email_per_s=100_000,
        # A message off its customer's partition is one of the hostile kinds here, refused as
        # `wrong_partition`; forwarding it (the default) has its own test (test_partitioning).
        strict_partitioning=True,
    )


def run(workdir: Path, bootstrap: str, inputs: int, http: int, seed: int) -> Accounting:
    rng = random.Random(seed)
    signer = ec.generate_private_key(ec.SECP256R1())
    der = signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = fuzz_settings(bootstrap, workdir, der, f"{seed}{rng.randrange(10**6)}")
    asyncio.run(topics.ensure_topics(settings))
    made = make_inputs(settings, rng, inputs)
    acc = Accounting()
    started = time.monotonic()
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        worker = start_worker(settings, log)
        try:
            wait_ready(settings, worker)
            asyncio.run(produce(settings, made))
            asyncio.run(
                send_http(
                    f"http://127.0.0.1:{settings.web_port}", http_requests(rng, http, signer), acc
                )
            )
            watched = [
                *(settings.topic(t) for t in topics.INPUTS),
                *(settings.topic(t) for t in topics.OUTBOUND),
            ]
            asyncio.run(
                topics.wait_until_consumed(
                    settings.kafka_bootstrap,
                    settings.app_id,
                    watched,
                    timeout=300,
                    alive=lambda: worker.poll() is None,
                )
            )
            acc.seconds = time.monotonic() - started
            acc.peak_rss_mb = _peak_rss_mb(worker.pid)
            counted = _inputs_counted(settings)
            alive = worker.poll() is None
        finally:
            stop_worker(worker)
    account(settings, made, acc, log_path.read_text(errors="replace"), alive)
    acc.lost = max(0, sum(acc.produced.values()) - counted)
    return acc


def _peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def account(settings: Settings, made: list[Input], acc: Accounting, log: str, alive: bool) -> None:
    bootstrap = settings.kafka_bootstrap
    read = lambda name: asyncio.run(topics.read_all(bootstrap, settings.topic(name)))  # noqa: E731
    letters = [DeadLetter.model_validate_json(v) for _, v in read(topics.DEAD_LETTERS)]
    decisions = [Decision.model_validate_json(v) for _, v in read(topics.DECISIONS)]
    requests = {
        NotificationRequest.model_validate_json(v).notification_id
        for lane in topics.OUTBOUND
        for _, v in read(lane)
    }
    by_place: dict[tuple[str, int, int], list[DeadLetter]] = {}
    for letter in letters:
        by_place.setdefault((letter.topic, letter.partition, letter.offset), []).append(letter)
    acc.decided = len(decisions)
    refused_ids: set[str] = set()
    for i in made:
        acc.produced[i.kind] += 1
        found = by_place.get((i.topic, i.partition or 0, i.offset), [])
        if found:
            acc.dead_lettered[found[0].code] += 1
            if i.kind != "hostile":
                acc.wrongly_refused.append(f"{i.label}@{i.offset}: {found[0].code}")
            elif i.event_id:
                refused_ids.add(i.event_id)
        elif i.kind == "hostile":
            acc.wrongly_applied.append(f"{i.label}@{i.partition}/{i.offset}")
        elif i.kind == "duplicate":
            acc.duplicates += 1
        else:
            acc.applied += 1
    acc.phantom_rows = sum(
        1
        for d in decisions
        if d.cause_event_id in refused_ids
        or (
            d.action == "sent"
            and d.notification_id is not None
            and d.notification_id not in requests
        )
    )
    acc.agent_crashes = int(not alive) + log.count("Crashed reason=") + log.count('"worker.halted"')
    contacts = _contacts(made)
    reasons = " ".join(letter.reason for letter in letters)
    acc.contacts_leaked = sorted(c for c in contacts if c in log or c in reasons)


def _inputs_counted(settings: Settings) -> int:
    """How many inputs on `account-events` the worker took, whatever became of them."""
    topic = settings.topic(topics.ACCOUNT_EVENTS)
    samples_ = metrics(settings.web_port)
    return round(
        sum(
            value
            for name, value in samples_.items()
            if name.startswith("clarion_inputs_total{") and f'topic="{topic}"' in name
        )
    )


def _contacts(made: list[Input]) -> set[str]:
    """Every phone number and address the inputs carry (profiles, and the refused phone)."""
    found: set[str] = set()
    for i in made:
        if i.label in ("customer.profile.updated", "bad_phone"):
            data = json.loads(i.value).get("data", {})
            found.update(str(p.get("number")) for p in data.get("phones", []))
            found.update(str(e.get("address")) for e in data.get("emails", []))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--http", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import tempfile

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker,
    ):
        acc = run(Path(tmp), broker.bootstrap, args.inputs, args.http, args.seed)
    print(acc.table(), end="")
    for name in ("wrongly_refused", "wrongly_applied", "contacts_leaked", "http_5xx"):
        listed = getattr(acc, name)
        if listed:
            print(f"{name}: {listed[:10]}")
    raise SystemExit(0 if acc.clean() else 1)


if __name__ == "__main__":
    main()
