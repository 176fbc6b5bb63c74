"""Helpers shared by the dashboard and alert tests: find every PromQL expression we ship.

Dashboards are plain Grafana JSON (``grafana/dashboards``); an expression lives in
``panels[].targets[].expr``, in the panels nested under a collapsed row, and in the
``templating`` variables (``label_values(metric, label)``). Grafana macros are substituted
before Prometheus sees an expression::

    sum(rate(pec_dlq_total[$__rate_interval]))  ->  sum(rate(pec_dlq_total[1m]))
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from pipeline.contracts.metrics import (
    BackfillMetrics,
    EvidenceMetrics,
    IngestMetrics,
    StreamMetrics,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"

_METRIC = re.compile(r"\b(pec_[a-z0-9_]+|pectrack_[a-z0-9_]+)\b")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([^,]+?)\s*,\s*[A-Za-z_]+\s*\)\s*$")


@dataclass(frozen=True)
class PanelExpr:
    """One expression as Grafana would send it, and where it came from."""

    dashboard: str
    panel: str
    expr: str


def require_binary(name: str) -> str:
    """Path of a Debian ``prometheus`` package binary, or fail saying how to install it."""
    path = shutil.which(name)
    assert path, f"{name} is missing: run `make system-deps` (as root) to install prometheus"
    return path


def dashboard_paths() -> list[Path]:
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths, f"no dashboards in {DASHBOARDS}"
    return paths


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels") or [])


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, rows and the panels of collapsed rows included."""
    return list(_walk(dashboard.get("panels") or []))


def dashboard_exprs(path: Path) -> list[PanelExpr]:
    """Every PromQL expression of one dashboard file (targets and query variables)."""
    dashboard = json.loads(path.read_text())
    found = [
        PanelExpr(path.name, panel.get("title", "?"), target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and isinstance(text, str):
            match = _LABEL_VALUES.match(text)
            found.append(
                PanelExpr(path.name, f"${variable['name']}", match.group(1) if match else text)
            )
    return found


def all_dashboard_exprs() -> list[PanelExpr]:
    return [expr for path in dashboard_paths() for expr in dashboard_exprs(path)]


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """Replace Grafana's macros and variables as Grafana does before querying."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    out = out.replace("$__range", rate_interval)
    # Multi-value variables with "All" selected become the allValue regex ".*".
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", out)


def metric_names(expr: str) -> set[str]:
    """Names of pectrack's own metrics an expression reads (``up`` and friends excluded)."""
    return set(_METRIC.findall(expr))


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exported_metric_names() -> set[str]:
    """Every sample name the code can expose, ``_total``/``_bucket`` suffixes included."""
    registry = CollectorRegistry()
    IngestMetrics(registry)
    BackfillMetrics(registry)
    StreamMetrics(registry)
    EvidenceMetrics(registry)
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    return {
        family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]
    }


def promtool_check_exprs(exprs: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on a recording-rules file with one rule per expression."""
    rules = [{"record": f"pectrack:check:{n}", "expr": expr} for n, expr in enumerate(exprs)]
    path = directory / "dashboard-exprs.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    return subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
