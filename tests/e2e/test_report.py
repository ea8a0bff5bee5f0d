"""An experiment judged offline (issue 22, part 4): `policy simulate` writes the ledger,
`report experiment` reads it, and its HTML page shows the figures in a real browser."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.report import Row, experiment_report
from streams.cli.report import read_file
from tests.conftest import POLICIES
from tests.e2e.test_cli import clarion

EXPERIMENT = """    experiment:
      name: soft-touch
      arms:
        - {name: champion, weight: 60}
        - {name: soft, weight: 25, ladder: hardship}
      holdout: 15
"""
T0 = datetime(2026, 11, 2, 14, tzinfo=UTC)
pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def with_experiment(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    collections = folder / "10-collections.yaml"
    text = collections.read_text()
    anchor = "    switch_on: {hardship.reported: hardship}"
    assert anchor in text
    collections.write_text(text.replace(anchor, EXPERIMENT + anchor, 1))
    return folder


def events(path: Path, customers: int) -> None:
    """Customers who miss a payment; some pay later, at random (seeded)."""
    rng = random.Random(22)
    lines = []
    for n in range(customers):
        cid = f"C-{n:04d}"
        base = {"customer_id": cid, "source": "test"}
        lines.append(
            {
                **base,
                "event_id": f"{cid}-p",
                "type": "customer.profile.updated",
                "occurred_at": T0.isoformat(),
                "data": {
                    "emails": [{"address": f"c{n}@example.com"}],
                    "phones": [
                        {"number": f"+1312555{n:04d}", "type": "mobile", "sms_consent": True}
                    ],
                    "time_zones": ["America/Chicago"],
                },
            }
        )
        lines.append(
            {
                **base,
                "event_id": f"{cid}-m",
                "type": "payment.missed",
                "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
                "account_id": f"A-{n:04d}",
                "data": {
                    "amount_due": "120.00",
                    "currency": "USD",
                    "due_date": "2026-10-28",
                    "days_past_due": 5,
                },
            }
        )
        if rng.random() < 0.4:
            lines.append(
                {
                    **base,
                    "event_id": f"{cid}-r",
                    "type": "payment.received",
                    "occurred_at": (T0 + timedelta(days=rng.randint(1, 40), minutes=n)).isoformat(),
                    "account_id": f"A-{n:04d}",
                    "data": {"amount": "120.00", "currency": "USD"},
                }
            )
    lines.sort(key=lambda e: e["occurred_at"])
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_simulate_writes_the_ledger_the_report_reads(tmp_path: Path) -> None:
    policies = with_experiment(tmp_path)
    checked = clarion("policy", "check", str(policies))
    assert checked.returncode == 0, checked.stderr
    feed = tmp_path / "events.jsonl"
    events(feed, 300)
    sim = clarion(
        "policy",
        "simulate",
        "--policies",
        str(policies),
        "--events",
        str(feed),
        "--format",
        "jsonl",
    )
    assert sim.returncode == 0, sim.stderr
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(sim.stdout)

    since = ["--since", "2026-11-01T00:00:00Z", "--ledger", str(ledger)]
    table = clarion("report", "experiment", "soft-touch", *since)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("experiment soft-touch: cases opened 2026-11-01 00:00Z to now")
    arms = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(arms) == {"champion", "soft", "holdout"}
    assert sum(int(row[1]) for row in arms.values()) == 300  # every customer, in one arm
    assert "difference from champion, with its 95% confidence interval:" in table.stdout

    # The figures are the ledger's: the same as computed here from its rows.
    figures = experiment_report(read_file(ledger), "soft-touch", datetime(2026, 11, 1, tzinfo=UTC))
    jsonl = clarion("report", "experiment", "soft-touch", *since, "--format", "jsonl")
    printed = [json.loads(line) for line in jsonl.stdout.splitlines()]
    for arm, row in zip(figures.arms, printed, strict=False):
        assert (row["arm"], row["cases"]) == (arm.arm, arm.cases)
        assert row["cure_rate"] == round(arm.cure_rate, 6)
        assert row["messages_per_case"] == round(arm.messages_per_case, 6)
    holdout = next(a for a in figures.arms if a.arm == "holdout")
    assert holdout.messages_per_case == 0 and holdout.calls_per_case == 0
    champion = next(a for a in figures.arms if a.arm == "champion")
    assert champion.messages_per_case > 0 and 0 < champion.cure_rate < 1
    assert all(isinstance(Row.parse(json.loads(line)), Row) for line in sim.stdout.splitlines())

    page = tmp_path / "report.html"
    html = clarion("report", "experiment", "soft-touch", *since, "--format", "html")
    page.write_text(html.stdout)
    shown = browser_text(page)
    assert "Experiment soft-touch" in shown
    for arm in figures.arms:
        assert f"{arm.arm}\n" in shown or f"{arm.arm} " in shown
        assert f"{arm.cure_rate * 100:.1f}%" in shown
        assert f"{arm.messages_per_case:.2f}" in shown
    for label in ("messages per case", "calls per case", "cure rate", "opt-out rate"):
        assert label in shown


def browser_text(page: Path) -> str:
    """The page as headless Chromium renders it: its text, charts included."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run `make test`: it installs chromium"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        browser.get(page.as_uri())
        charts = browser.find_elements(By.TAG_NAME, "svg")
        assert len(charts) == 4
        assert all(chart.size["width"] > 0 for chart in charts)
        return str(browser.find_element(By.TAG_NAME, "body").text)
    finally:
        browser.quit()
