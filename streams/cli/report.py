"""`clarion report experiment NAME`: an experiment's arms side by side, from the ledger.

The ledger is the `decisions` topic, or a file `policy simulate --format jsonl`
wrote (so a team can judge an experiment offline before it runs). The figures
are `policies.report`'s; this prints them as a table, JSON lines, or one HTML
page with a chart per metric that needs nothing but a browser.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from policies.report import METRICS, ArmFigures, Difference, ExperimentReport, Row
from schemas.decisions import Decision
from streams.kafka import topics
from streams.runtime.settings import Settings

LABELS = {
    "messages_per_case": "messages per case",
    "calls_per_case": "calls per case",
    "cure_rate": "cure rate",
    "opt_out_rate": "opt-out rate",
}
RATES = frozenset({"cure_rate", "opt_out_rate"})


def read_file(path: Path) -> list[Row]:
    """The rows of a JSONL ledger (`policy simulate --format jsonl`, `clarion ledger`)."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            found.append(Row.parse(json.loads(line)))
    return found


async def read_topic(settings: Settings) -> list[Row]:
    rows = await topics.read_all(settings.kafka_bootstrap, settings.topic(topics.DECISIONS))
    return [Row.of(Decision.model_validate_json(value)) for _, value in rows]


def render(report: ExperimentReport, fmt: str, out: TextIO) -> None:
    if fmt == "jsonl":
        for arm in report.arms:
            out.write(json.dumps({"arm": arm.arm, **_figures(arm)}) + "\n")
        for d in report.differences:
            out.write(json.dumps({"difference": d.metric, "arm": d.arm, **_difference(d)}) + "\n")
    elif fmt == "html":
        out.write(_html(report))
    else:
        out.write(_table(report))


def _figures(arm: ArmFigures) -> dict[str, float | int]:
    return {
        "customers": arm.customers,
        "cases": arm.cases,
        **{metric: round(getattr(arm, metric), 6) for metric in METRICS},
    }


def _difference(d: Difference) -> dict[str, float | bool]:
    return {
        "value": round(d.value, 6),
        "low": round(d.low, 6),
        "high": round(d.high, 6),
        "significant": d.significant,
    }


def _value(metric: str, value: float) -> str:
    return f"{value * 100:.1f}%" if metric in RATES else f"{value:.2f}"


def _change(metric: str, value: float) -> str:
    return f"{value * 100:+.1f} pts" if metric in RATES else f"{value:+.2f}"


def _heading(report: ExperimentReport) -> str:
    until = _when(report.until) if report.until else "now"
    return (
        f"experiment {report.experiment}: cases opened {_when(report.since)} to {until}; "
        f"a cure is a payment or a plan within {report.cure_days} days"
    )


def _table(report: ExperimentReport) -> str:
    lines = [_heading(report)]
    if not report.arms:
        return "\n".join([*lines, "no case of this experiment in the ledger", ""])
    lines.append(
        f"{'arm':<12} {'customers':>9} {'cases':>7}" + "".join(f" {LABELS[m]:>17}" for m in METRICS)
    )
    for arm in report.arms:
        lines.append(
            f"{arm.arm:<12} {arm.customers:>9} {arm.cases:>7}"
            + "".join(f" {_value(m, getattr(arm, m)):>17}" for m in METRICS)
        )
    lines.append(f"difference from {report.champion}, with its 95% confidence interval:")
    if not report.differences:
        lines.append(f"  none: no case of {report.champion} (name the champion with --champion)")
    for d in report.differences:
        lines.append(f"  {d.arm:<12} {LABELS[d.metric]:<17} {_statement(d)}")
    return "\n".join(lines) + "\n"


def _statement(d: Difference) -> str:
    span = f"[{_change(d.metric, d.low)}, {_change(d.metric, d.high)}]"
    verdict = (
        "significant: the interval leaves out zero"
        if d.significant
        else "not significant: it may be no difference at all"
    )
    return f"{_change(d.metric, d.value):>10}  {span:<24} {verdict}"


def _html(report: ExperimentReport) -> str:
    charts = "".join(_chart(report, metric) for metric in METRICS)
    rows = "".join(
        f"<tr><td>{html.escape(d.arm)}</td><td>{LABELS[d.metric]}</td>"
        f"<td>{_change(d.metric, d.value)}</td>"
        f"<td>{_change(d.metric, d.low)} to {_change(d.metric, d.high)}</td>"
        f"<td>{'significant' if d.significant else 'not significant'}</td></tr>"
        for d in report.differences
    )
    arms = "".join(
        f"<tr><td>{html.escape(a.arm)}</td><td>{a.customers}</td><td>{a.cases}</td>"
        + "".join(f"<td>{_value(m, getattr(a, m))}</td>" for m in METRICS)
        + "</tr>"
        for a in report.arms
    )
    heads = "".join(f"<th>{LABELS[m]}</th>" for m in METRICS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Experiment {html.escape(report.experiment)}</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2733; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #c8d0da; padding: .3em .7em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
figure {{ margin: 0; }}
</style></head><body>
<h1>Experiment {html.escape(report.experiment)}</h1>
<p>{html.escape(_heading(report))}</p>
<table id="arms"><tr><th>arm</th><th>customers</th><th>cases</th>{heads}</tr>{arms}</table>
<div class="charts">{charts}</div>
<h2>Difference from {html.escape(report.champion)} (95% confidence interval)</h2>
<table id="differences"><tr><th>arm</th><th>metric</th><th>difference</th><th>interval</th>
<th>verdict</th></tr>{rows}</table>
</body></html>
"""


def _chart(report: ExperimentReport, metric: str) -> str:
    """One bar per arm, its value written beside it: an SVG, no script, no network."""
    values = [(a.arm, getattr(a, metric)) for a in report.arms]
    top = max((v for _, v in values), default=0.0) or 1.0
    bars = []
    for i, (arm, value) in enumerate(values):
        width = 220 * value / top
        y = 30 + i * 28
        bars.append(
            f'<text x="0" y="{y + 14}">{html.escape(arm)}</text>'
            f'<rect x="90" y="{y}" width="{width:.1f}" height="20" fill="#3b6ea8"></rect>'
            f'<text x="{96 + width:.1f}" y="{y + 14}">{_value(metric, value)}</text>'
        )
    height = 40 + 28 * len(values)
    return (
        f'<figure><svg role="img" aria-label="{LABELS[metric]}" width="380" '
        f'height="{height}" font-size="13"><text x="0" y="16" font-weight="bold">'
        f"{LABELS[metric]}</text>{''.join(bars)}</svg></figure>"
    )


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
