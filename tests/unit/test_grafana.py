"""deploy/grafana/clarion.json is a dashboard Grafana can load and whose queries parse.

That every metric it queries is one a worker publishes is checked against a live worker in
tests/integration/test_pipeline.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest

from tests.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "clarion.json"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in dashboard()["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize(("title", "target"), targets(), ids=[t for t, _ in targets()])
def test_every_query_parses_and_names_only_labels_it_keeps(
    title: str, target: dict[str, Any]
) -> None:
    expr = target["expr"]
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    promql_parser.parse(expr)  # raises on a query Prometheus would refuse
    kept = {
        label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")
    }
    shown = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
    assert shown <= kept, (title, sorted(shown - kept))


def test_a_broken_query_is_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (code) (increase(clarion_dead_letters_total[1h])")


def test_panels_use_the_chosen_data_source_and_do_not_overlap() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
