"""The composition root: the Faust app, and each role's agents and pages installed on it.

One process runs both sides (`CLARION_ROLE=all`, the default), or each runs
apart: `intake` (the engine, its timers, the API and the preference page;
streams/intake/) and `dispatch` (the providers, their webhooks and the SMS
replies; streams/dispatch/), each in its own consumer group, so each can have
its own cores and be scaled on its own. The two meet only through topics. The
tables' changelogs are named after `CLARION_APP_ID` in every role, so a
deployment can move between the two layouts and keep its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import structlog

from channels.base import Channel
from channels.router import ChannelRouter
from channels.templates import Templates
from policies.loader import load_directory
from policies.model import PolicySet
from streams.dispatch import agent as dispatch
from streams.dispatch.calls import LiveCalls
from streams.dispatch.providers import build_channels
from streams.intake import agent as intake
from streams.kafka import topics
from streams.kafka.ordering import CrossTopicOrder
from streams.kafka.outlets import outlets
from streams.kafka.transport import ClarionApp
from streams.runtime import security
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from streams.versions import catalog
from streams.versions.follower import Follower
from streams.versions.in_force import Versions
from streams.web import api, page, probes, webhooks

log = structlog.get_logger(__name__)

BUNDLED = Path(__file__).parent / "bundled"
"""The example policies, templates and demo events, shipped in the wheel as package data
(in the checkout, `streams/bundled` is a link to `deploy/`, where they are kept)."""
EXAMPLE_POLICIES = BUNDLED / "policies"


def policies_dir(settings: Settings) -> Path:
    return settings.policies_dir or EXAMPLE_POLICIES


def templates_dir(policies: Path, explicit: Path | None = None) -> Path:
    """`explicit`, else `templates/` beside the policy files, else the bundled examples."""
    if explicit is not None:
        return explicit
    beside = policies / "templates"
    return beside if beside.is_dir() else EXAMPLE_POLICIES / "templates"


def create_app(
    settings: Settings,
    policy: PolicySet | None = None,
    channel: Channel | None = None,
    published: Sequence[catalog.Entry] = (),
) -> faust.App:
    """A worker's app for `settings.role`; `channel` serves every channel (tests, the demo).

    `published`: what the `policies` topic held when the worker started, put in force
    before any input is read; a follower adds what is published later.
    """
    folder = templates_dir(policies_dir(settings), settings.templates_dir)
    policy = policy or load_directory(policies_dir(settings), folder)
    log.info(
        "worker.policies",
        role=settings.role,
        policies=str(policies_dir(settings)),
        version=policy.version,
        escalations=len(policy.escalations),
    )
    app = _faust_app(settings)
    metrics = Metrics()
    out = outlets(app, settings, metrics)
    versions = Versions(
        policy,
        Templates(folder, policy.default_locale),
        settings.data_dir / "policy-versions",
        metrics,
    )
    for entry in published:
        versions.apply(entry.published)
    start = published[-1].offset + 1 if published else 0

    @app.service
    class _Follower(Follower):
        def __init__(self, **kw: Any) -> None:
            super().__init__(settings, versions, start, **kw)

    pending = None
    if settings.role != "dispatch":
        engine = intake.install(app, settings, versions, out)
        api.install(app, settings, versions.in_force_now, out.produce, engine.customers)
        page.install(app, settings, versions.in_force_now, out.produce, engine.customers)
        pending = engine.index.pending
    if settings.role != "intake":
        channels = (
            ChannelRouter({"sms": channel, "email": channel, "voice": channel})
            if channel is not None
            else build_channels(settings)
        )
        calls = LiveCalls()
        links = page.preference_links(settings)
        dispatch.install(app, settings, versions, channels, out, calls, links)
        webhooks.install(app, settings, out.produce, calls, channels.channel_for("voice"))
    probes.install(app, metrics, pending)
    return app


def _faust_app(settings: Settings) -> ClarionApp:
    return ClarionApp(
        settings.group(),
        changelog_prefix=settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        idempotent=settings.kafka_idempotence == "on",  # `auto` is resolved by clarion worker
        input_order=CrossTopicOrder(
            frozenset(settings.topic(t) for t in (*topics.INPUTS, topics.DELIVERY_RECEIPTS)),
            settings.input_order_wait_ms / 1000,
        ),
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=security.credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        producer_max_request_size=settings.producer_max_request_bytes,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Built-in pages off: /table would serve customer data to anyone on the port.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
