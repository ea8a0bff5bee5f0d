"""An experiment's result, read from the ledger: per arm, what it cost and what it brought.

Every figure comes from decisions the pipeline (or `policy simulate`) recorded:
`opened` rows say which case is in which arm, `sent` rows what each case sent,
`stopped` rows whether a payment or a plan ended it (a cure), and `consent`
rows whether the customer revoked a consent. Each challenger is compared with
the champion by the difference and its 95% confidence interval (normal
approximation: proportions for the rates, Welch for the means), and called
significant when the interval leaves out zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from schemas.decisions import Decision

CURES = frozenset({"payment.received", "payment_plan.agreed"})
"""What ends a case as a cure: the customer paid, or agreed a plan."""
Z95 = 1.959963984540054


class Row(NamedTuple):
    """What the report reads of one ledger row (from the topic, or simulate's JSONL)."""

    at: datetime
    customer_id: str
    case_id: str | None
    action: str
    channel: str | None
    reason: str
    experiment: str | None
    arm: str | None

    @classmethod
    def of(cls, decision: Decision) -> Row:
        d = decision
        return cls(
            d.at, d.customer_id, d.case_id, d.action, d.channel, d.reason, d.experiment, d.arm
        )

    @classmethod
    def parse(cls, row: Mapping[str, Any]) -> Row:
        at = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00"))
        return cls(
            at,
            str(row["customer_id"]),
            row.get("case_id"),
            str(row["action"]),
            row.get("channel"),
            str(row.get("reason") or ""),
            row.get("experiment"),
            row.get("arm"),
        )


@dataclass(frozen=True, slots=True)
class ArmFigures:
    arm: str
    customers: int
    cases: int
    messages: tuple[int, ...]
    """Emails and SMS sent, per case."""
    calls: tuple[int, ...]
    """Calls placed, per case."""
    cured: int
    """Cases a payment or a plan stopped within the cure window."""
    opted_out: int
    """Customers who revoked a consent within the cure window of their first case."""

    @property
    def messages_per_case(self) -> float:
        return _mean(self.messages)

    @property
    def calls_per_case(self) -> float:
        return _mean(self.calls)

    @property
    def cure_rate(self) -> float:
        return self.cured / self.cases if self.cases else 0.0

    @property
    def opt_out_rate(self) -> float:
        return self.opted_out / self.customers if self.customers else 0.0


@dataclass(frozen=True, slots=True)
class Difference:
    """A challenger's figure minus the champion's, with its 95% confidence interval."""

    arm: str
    metric: str
    value: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


METRICS = ("messages_per_case", "calls_per_case", "cure_rate", "opt_out_rate")


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    experiment: str
    since: datetime
    until: datetime | None
    cure_days: int
    champion: str
    arms: list[ArmFigures]
    differences: list[Difference]


def experiment_report(
    rows: Iterable[Row],
    experiment: str,
    since: datetime,
    until: datetime | None = None,
    cure_days: int = 30,
    champion: str = "champion",
) -> ExperimentReport:
    """The cases of `experiment` opened in [since, until), arm by arm."""
    rows = sorted(rows, key=lambda r: r.at)
    window = timedelta(days=cure_days)
    opened: dict[str, Row] = {}
    for r in rows:
        ours = r.action == "opened" and r.experiment == experiment and r.case_id is not None
        if ours and since <= r.at and (until is None or r.at < until):
            opened.setdefault(str(r.case_id), r)
    messages = dict.fromkeys(opened, 0)
    calls = dict.fromkeys(opened, 0)
    cured: set[str] = set()
    first_case: dict[str, Row] = {}
    for case in opened.values():
        first_case.setdefault(case.customer_id, case)
    revoked: set[str] = set()
    for r in rows:
        cid = r.case_id
        if cid is not None and cid in opened:
            if r.action == "sent" and r.channel == "voice":
                calls[cid] += 1
            elif r.action == "sent":
                messages[cid] += 1
            elif r.action == "stopped" and r.reason in CURES and r.at <= opened[cid].at + window:
                cured.add(cid)
        first = first_case.get(r.customer_id)
        revokes = r.action == "consent" and r.reason == "revoked"
        if revokes and first is not None and first.at <= r.at <= first.at + window:
            revoked.add(r.customer_id)
    arms = sorted({str(c.arm) for c in opened.values()}, key=lambda a: (a != champion, a))
    figures = []
    for arm in arms:
        ids = [cid for cid, c in opened.items() if c.arm == arm]
        people = {opened[cid].customer_id for cid in ids}
        figures.append(
            ArmFigures(
                arm=arm,
                customers=len(people),
                cases=len(ids),
                messages=tuple(messages[cid] for cid in ids),
                calls=tuple(calls[cid] for cid in ids),
                cured=sum(1 for cid in ids if cid in cured),
                opted_out=sum(1 for p in people if p in revoked and first_case[p].arm == arm),
            )
        )
    base = next((f for f in figures if f.arm == champion), None)
    differences = [] if base is None else _differences(base, figures)
    return ExperimentReport(experiment, since, until, cure_days, champion, figures, differences)


def _differences(base: ArmFigures, figures: list[ArmFigures]) -> list[Difference]:
    found = []
    for other in figures:
        if other.arm == base.arm:
            continue
        for metric, value, se in (
            ("messages_per_case", *_means(other.messages, base.messages)),
            ("calls_per_case", *_means(other.calls, base.calls)),
            ("cure_rate", *_shares(other.cured, other.cases, base.cured, base.cases)),
            (
                "opt_out_rate",
                *_shares(other.opted_out, other.customers, base.opted_out, base.customers),
            ),
        ):
            found.append(Difference(other.arm, metric, value, value - Z95 * se, value + Z95 * se))
    return found


def _mean(values: tuple[int, ...]) -> float:
    return sum(values) / len(values) if values else 0.0


def _variance(values: tuple[int, ...]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _means(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[float, float]:
    """Difference of means and its standard error (Welch)."""
    if not a or not b:
        return 0.0, math.inf
    return _mean(a) - _mean(b), math.sqrt(_variance(a) / len(a) + _variance(b) / len(b))


def _shares(hits_a: int, n_a: int, hits_b: int, n_b: int) -> tuple[float, float]:
    """Difference of proportions and its standard error (Wald)."""
    if not n_a or not n_b:
        return 0.0, math.inf
    p_a, p_b = hits_a / n_a, hits_b / n_b
    return p_a - p_b, math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
