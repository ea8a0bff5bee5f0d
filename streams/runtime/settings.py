"""Worker settings, read from the environment (``CLARION_*``) by pydantic-settings.

Secrets and addresses come only from the environment; a wrong value stops the
worker at start-up with the variable's name, not later with a stack trace
(`Settings.from_env` turns pydantic's error into a `SettingsError` that names it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "CLARION_"
DEAD_LETTER_OVERHEAD = 16 * 1024
"""More than a dead letter needs beside its input: a reason of 1,000 characters, a key
of 1 KiB, both in JSON and base64, the pointers and the record's own framing."""
SSL_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
"""The settings that name TLS files (checked to exist when the worker starts)."""


class SettingsError(RuntimeError):
    """A setting is missing or has a value that cannot be used."""


class BrokerUnreachable(RuntimeError):
    """No connection to the configured broker: down, wrong address, or refused credentials."""


class Settings(BaseSettings):
    """Every field is read from ``CLARION_<FIELD>``; an empty variable counts as unset."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="host:port[,host:port...] of any Kafka cluster"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka connection is made (streams/runtime/security.py)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the broker's is checked against; "
        "unset: the system's trust store",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="a client certificate (PEM), for brokers that ask for one"
    )
    kafka_ssl_keyfile: Path | None = Field(default=None, description="its private key (PEM)")
    kafka_idempotence: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="the idempotent producer (a retried send is written once); auto: on when "
        "the broker grants producer ids (Apache Kafka, MSK, Confluent; not Tansu), asked when "
        "the worker starts",
    )
    app_id: str = Field(default="clarion", pattern=r"^[A-Za-z0-9._-]+$")
    role: Literal["all", "intake", "dispatch"] = Field(
        default="all",
        description="all: one process does everything; intake (the engine, the API and "
        "the preference page) and dispatch (the providers and their webhooks) run apart",
    )
    topic_prefix: str = Field(default="clarion.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    ledger_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="how long `decisions` and `dead-letters` keep what they hold, set when "
        "Clarion creates them; unset: forever (a broker's default would drop the ledger after "
        "7 days)",
    )
    policies_dir: Path | None = Field(
        default=None, description="the ops teams' YAML; unset: the bundled example policies"
    )
    outbox_path: Path = Field(default=Path("var/outbox.jsonl"), description="sandbox channel")
    data_dir: Path = Field(default=Path("var/worker-data"))
    store: str = Field(default="memory://", description="memory:// or rocksdb://")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    input_order_wait_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description="how long an input may wait for a customer's earlier input on another "
        "topic (events, profiles, preferences, receipts); 0: only while the broker has more "
        "of that topic than was fetched (docs/operations.md, 'Order across topics')",
    )
    lanes: bool = Field(
        default=True,
        description="urgent notification requests go on notifications-outbound-urgent and are "
        "dispatched apart from the rest; false: one lane for all (docs/operations.md, 'Lanes')",
    )
    lanes_route_by_type: bool = Field(
        default=False,
        description="copy events of an urgent type from account-events to "
        "account-events-urgent, for producers that cannot choose the topic",
    )
    strict_partitioning: bool = Field(
        default=False,
        description="true: an input on another partition than its customer's is dead-lettered "
        "(wrong_partition); false: intake forwards it to the customer's partition",
    )
    max_message_bytes: int = Field(
        default=64 * 1024, ge=1024, description="a larger input is refused as too_large"
    )
    producer_max_request_bytes: int = Field(
        default=1_000_000,
        ge=64 * 1024,
        description="the largest request the worker's producer sends (Faust's default); "
        "keep it at or under the brokers' message.max.bytes",
    )
    dead_letter_max_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="the largest input a dead letter keeps whole; above it, the first 4 KiB, "
        "the length, the SHA-256 and where the original is",
    )
    dedupe_window_hours: float = Field(
        default=72.0, gt=0, description="how long an event id is remembered after it was seen"
    )
    dedupe_max_ids: int = Field(default=512, ge=1)
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=1,
        description="consumer fetch wait; unset keeps Faust's 1500 (the demo sets 10 for Tansu)",
    )
    intake_batch: int = Field(
        default=500, ge=1, description="inputs the intake agent takes at once (at most)"
    )
    intake_batch_wait_s: float = Field(
        default=0.005, gt=0, description="how long intake waits to fill a batch"
    )
    tick_interval_s: float = Field(
        default=0.25, gt=0, description="how often a worker advances its timers (wall clock)"
    )
    session_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="consumer group session timeout; short values speed up joins on Tansu",
    )
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    commit_interval_s: float = Field(default=2.8, gt=0)
    clock: Literal["wall", "event"] = Field(
        default="wall", description="event: now is the time the input occurred (demo, replays)"
    )
    templates_dir: Path | None = Field(
        default=None, description="unset: templates/ beside the policies"
    )
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Which implementation serves each channel, and the providers' settings.
    channel_sms: Literal["sandbox", "twilio"] = "sandbox"
    channel_voice: Literal["sandbox", "twilio"] = "sandbox"
    channel_email: Literal["sandbox", "sendgrid"] = "sandbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_sms_from: str | None = Field(default=None, description="E.164 sender number")
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="sends through a messaging service instead of one number"
    )
    twilio_voice_from: str | None = None
    twilio_status_callback_url: str | None = Field(
        default=None, description="the public URL Twilio calls back (behind any proxy)"
    )
    twilio_machine_detection: Literal["", "Enable", "DetectMessageEnd"] = "DetectMessageEnd"
    twilio_api_base: str | None = Field(default=None, description="tests and egress proxies")
    sendgrid_api_key: SecretStr | None = None
    sendgrid_from_email: str | None = None
    sendgrid_from_name: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_unsubscribe_groups: str = Field(
        default="", description="category=group_id pairs, comma-separated"
    )
    sendgrid_unsubscribe_mailto: str | None = None
    provider_timeout_s: float = Field(default=10.0, gt=0)

    # What comes back in: webhooks, the preferences API, the preference page.
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="the worker's web root as providers and customers see it (behind any proxy); "
        "webhook signatures are checked against it, never against the Host header",
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None, description="the Event Webhook's verification key (base64 DER, from SendGrid)"
    )
    sendgrid_webhook_tolerance_s: float = Field(
        default=600.0, gt=0, description="older signed timestamps are refused as replays"
    )
    sms_help_text: str = Field(
        default="Clarion account notices. Reply STOP to opt out, START to opt back in. "
        "Msg & data rates may apply.",
        max_length=320,
    )
    api_keys: SecretStr | None = Field(
        default=None, description="preferences API keys, comma-separated (any one is accepted)"
    )
    link_keys: SecretStr | None = Field(
        default=None,
        description="preference-link signing keys as id:secret pairs, comma-separated; "
        "the first signs, all verify (rotation)",
    )
    link_ttl_days: float = Field(default=30.0, gt=0, description="how long a preference link works")

    # The dispatcher: how fast, how often again, when to stop trying a provider.
    dispatch_concurrency: int = Field(
        default=32, ge=1, description="provider calls in flight per worker"
    )
    rate_sms_per_s: float = Field(default=10.0, gt=0, description="per Twilio sender")
    rate_voice_per_s: float = Field(default=1.0, gt=0, description="per Twilio caller number")
    rate_email_per_s: float = Field(default=100.0, gt=0, description="SendGrid requests")
    rate_twilio_account_per_s: float | None = Field(
        default=None,
        gt=0,
        description="every Twilio message and call of the account together (account-based "
        "throughput); unset: only the per-sender rates",
    )
    rate_sendgrid_account_per_s: float | None = Field(
        default=None, gt=0, description="every SendGrid request of the account together"
    )
    urgent_reserve_sms: float = Field(
        default=0.0, ge=0, lt=1, description="share of the SMS rate only urgent messages use"
    )
    urgent_reserve_voice: float = Field(
        default=0.0, ge=0, lt=1, description="share of the voice rate only urgent calls use"
    )
    urgent_reserve_email: float = Field(
        default=0.0, ge=0, lt=1, description="share of the email rate only urgent mail uses"
    )
    rate_park_after_s: float = Field(
        default=1.0,
        ge=0,
        description="a send its rate limit would hold longer waits on notification-retries, "
        "so it does not hold back the rest of its batch",
    )
    retry_max_attempts: int = Field(default=6, ge=1, description="attempts per message")
    retry_base_s: float = Field(default=1.0, gt=0, description="first back-off; doubles")
    retry_max_s: float = Field(default=60.0, gt=0, description="longest back-off")
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive transient failures that open the circuit"
    )
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, description="how long an open circuit waits before one trial"
    )

    @model_validator(mode="after")
    def _providers_have_credentials(self) -> Settings:
        """A configured provider without its credentials stops the worker at start-up."""
        needed: list[str] = []
        if "twilio" in (self.channel_sms, self.channel_voice):
            needed += ["twilio_account_sid", "twilio_auth_token"]
        if self.channel_sms == "twilio" and not self.twilio_messaging_service_sid:
            needed.append("twilio_sms_from")
        if self.channel_voice == "twilio":
            needed.append("twilio_voice_from")
        if self.channel_email == "sendgrid":
            needed += ["sendgrid_api_key", "sendgrid_from_email"]
        missing = [PREFIX + n.upper() for n in needed if not getattr(self, n)]
        if missing:
            raise ValueError(f"missing for the configured channels: {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> Settings:
        """A dead letter (its input in base64, the reason, the pointers) must fit a request."""
        largest = self.dead_letter_max_bytes * 4 // 3 + DEAD_LETTER_OVERHEAD
        if largest > self.producer_max_request_bytes:
            raise ValueError(
                f"{PREFIX}DEAD_LETTER_MAX_BYTES ({self.dead_letter_max_bytes}) is too large for "
                f"{PREFIX}PRODUCER_MAX_REQUEST_BYTES ({self.producer_max_request_bytes}): a dead "
                f"letter keeps its input in base64 (4/3 of it) plus {DEAD_LETTER_OVERHEAD} bytes"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Settings:
        """A half-configured connection fails at start-up, naming what is missing or stray."""
        protocol = self.kafka_security_protocol
        problems: list[str] = []
        if protocol.startswith("SASL_"):
            for name in ("kafka_sasl_username", "kafka_sasl_password"):
                if not getattr(self, name):
                    problems.append(f"{PREFIX}{name.upper()} is required with {protocol}")
        if not protocol.endswith("SSL"):
            stray = [n for n in SSL_FILES if getattr(self, n) is not None]
            problems += [f"{PREFIX}{n.upper()} is set but {protocol} uses no TLS" for n in stray]
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            problems.append(f"{PREFIX}KAFKA_SSL_CERTFILE and {PREFIX}KAFKA_SSL_KEYFILE go together")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def status_callback_url(self) -> str | None:
        """Where Twilio reports on a message or call: explicit, else under the public URL."""
        if self.twilio_status_callback_url:
            return self.twilio_status_callback_url
        return f"{self.public_url.rstrip('/')}/webhooks/twilio/status" if self.public_url else None

    def unsubscribe_groups(self) -> dict[str, int]:
        pairs = (p.split("=", 1) for p in self.sendgrid_unsubscribe_groups.split(",") if p)
        return {name.strip(): int(group) for name, group in pairs}

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def group(self, role: Literal["intake", "dispatch"] | None = None) -> str:
        """The consumer group of a role: intake's is the app id, as for `all`.

        Roles are separate groups because Faust assigns every topic of a group to
        every member; an intake worker would be given partitions of
        `notifications-outbound` it never reads.
        """
        role = role or ("dispatch" if self.role == "dispatch" else "intake")
        return self.app_id if role == "intake" else f"{self.app_id}-dispatch"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The environment's settings; explicit overrides win over it. `SettingsError` names
        each variable that is wrong, and never shows a secret's value."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            lines = []
            for err in exc.errors(include_url=False):
                if not err["loc"]:
                    lines.append(str(err["msg"]).removeprefix("Value error, "))
                    continue
                field = str(err["loc"][0])
                shown = "***" if _secret(field) else repr(err.get("input"))
                lines.append(f"{PREFIX}{field.upper()}: {err['msg']} (got {shown})")
            raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def _secret(field: str) -> bool:
    return field.endswith(("_token", "_key", "_secret", "_keys", "_password"))
