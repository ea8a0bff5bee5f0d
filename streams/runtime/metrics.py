"""What a worker has done, for Prometheus to scrape at `/metrics`.

Counters of inputs by outcome, dead letters by code, decisions by action and
reason, and provider calls by outcome; gauges read when scraped (timers
pending, readiness, circuit breakers, consumer lag). They are in-process
and reset with the worker, as Prometheus counters do; its `rate()` and
`increase()` handle the resets. The text format is Prometheus' own
exposition format (version 0.0.4): small enough to write here rather than
bring in a client library for it.

No label carries customer data: topics, partitions, codes, reasons, actions,
channels and providers only. A decision's `reason` is a code from a fixed set
(schemas/decisions.py), so the label stays small.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

CONTENT_TYPE = "text/plain; version=0.0.4"
"""aiohttp adds the charset (utf-8) itself, and refuses a type that names one."""


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str, amount: float = 1.0) -> None:
        """Count one more under these label values (in the order of `labels`)."""
        self._values[values] = self._values.get(values, 0.0) + amount

    def value(self, *values: str) -> float:
        return self._values.get(values, 0.0)

    def samples(self) -> list[str]:
        """Its lines in the text format, one per set of label values."""
        return [
            f"{self.name}{_labels(self.labels, values)} {_number(count)}"
            for values, count in sorted(self._values.items())
        ]


class Histogram:
    """Observations counted into cumulative buckets, as Prometheus' histograms are."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self._counts = [0] * len(buckets)
        self.count, self.sum = 0, 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self._counts[i] += 1

    def samples(self) -> list[str]:
        lines = [
            f'{self.name}_bucket{{le="{_number(bound)}"}} {count}'
            for bound, count in zip(self.buckets, self._counts, strict=True)
        ]
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        return [*lines, f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]


class Metrics:
    """A worker's metrics: its counters, and gauges computed when scraped."""

    def __init__(self) -> None:
        self._counters: list[Counter] = []
        self.inputs = self._counter(
            "clarion_inputs_total",
            "Messages intake took from its topics, by topic and outcome "
            "(accepted, duplicate, dead_lettered, forwarded: sent on to the customer's "
            "partition).",
            ("topic", "outcome"),
        )
        self.dead_letters = self._counter(
            "clarion_dead_letters_total", "Messages sent to dead-letters, by code.", ("code",)
        )
        self.decisions = self._counter(
            "clarion_decisions_total",
            "Rows written to the decisions ledger, by action, channel ('' for none) and reason.",
            ("action", "channel", "reason"),
        )
        self.provider_calls = self._counter(
            "clarion_provider_calls_total",
            "Calls to a provider, by provider, channel and outcome "
            "(accepted, transient: retried, permanent: not retried).",
            ("provider", "channel", "outcome"),
        )
        self.lanes_routed = self._counter(
            "clarion_lanes_routed_total",
            "Urgent events copied from account-events to account-events-urgent, by type "
            "(CLARION_LANES_ROUTE_BY_TYPE).",
            ("type",),
        )
        self.lanes_router_errors = self._counter(
            "clarion_lanes_router_errors_total",
            "Failures of the lanes' router, by error; it starts again a second later "
            "(CLARION_LANES_ROUTE_BY_TYPE).",
            ("error",),
        )
        self.lateness = Histogram(
            "clarion_timer_lateness_seconds",
            "How long after its due instant a step fired (wall clock only).",
            (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        )
        self._gauges: list[_Gauge] = []

    def _counter(self, name: str, help_text: str, labels: tuple[str, ...]) -> Counter:
        counter = Counter(name, help_text, labels)
        self._counters.append(counter)
        return counter

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A value read at each scrape (`read` must be quick and must not block)."""
        self._gauges.append(_Gauge(name, help_text, (), lambda: {(): read()}))

    def gauges(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        """Values by label values, read at each scrape (quick, never blocking)."""
        self._gauges.append(_Gauge(name, help_text, labels, read))

    def render(self) -> str:
        lines: list[str] = []
        for counter in self._counters:
            lines += [f"# HELP {counter.name} {counter.help}", f"# TYPE {counter.name} counter"]
            lines += counter.samples()
        lateness = self.lateness
        lines += [f"# HELP {lateness.name} {lateness.help}", f"# TYPE {lateness.name} histogram"]
        lines += lateness.samples()
        for gauge in self._gauges:
            lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge"]
            lines += [
                f"{gauge.name}{_labels(gauge.labels, values)} {_number(value)}"
                for values, value in sorted(gauge.read().items())
            ]
        return "\n".join(lines) + "\n"


class _Gauge(NamedTuple):
    name: str
    help: str
    labels: tuple[str, ...]
    read: Callable[[], Mapping[tuple[str, ...], float]]


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = (f'{name}="{_escaped(value)}"' for name, value in zip(names, values, strict=True))
    return "{" + ",".join(pairs) + "}"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
