"""Draw a dashboard's key panels to a PNG from Prometheus.

There is no Grafana server to screenshot, so this reads the provisioned dashboard JSON,
runs each panel's queries against Prometheus (``/api/v1/query_range``, Grafana macros
substituted the way Grafana would) and draws them with matplotlib::

    pectrack render-dashboard --prometheus http://127.0.0.1:9090 \\
        --dashboard grafana/dashboards/pectrack-overview.json --out docs/overview.png

Stat panels become number tiles (last value), time series become line charts. Needs the
optional ``render`` extra (matplotlib). Errors: :class:`RenderError` (Prometheus
unreachable or rejecting a query, a panel title that is not in the dashboard).
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PANELS", "RenderError", "Series", "Window", "render"]

# The overview's key panels: the numbers an on-call engineer looks at first, then trends.
DEFAULT_PANELS = (
    "Messages in flight",
    "Overdue messages",
    "Orphan receipts",
    "Mailboxes connected",
    "Processing lag (max)",
    "Delivery latency percentiles by phase",
    "Receipts applied by kind",
    "Delivery failures by reason",
    "Records processed by processor",
    "Processing lag by processor",
    "Dead letters by reason",
    "Messages ingested by outcome",
    "Sync age per mailbox",
    "Cursor lag per mailbox",
)

_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class RenderError(RuntimeError):
    """Prometheus could not answer, or the dashboard lacks a requested panel."""


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a panel: its legend and ``(unix time, value)`` points."""

    legend: str
    points: tuple[tuple[float, float], ...]


# --- the dashboard (pure) --------------------------------------------------------------


def walk_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, the panels of (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels") or [])


def substitute(expr: str, rate_interval: str) -> str:
    """Grafana's macros and variables as Grafana expands them ("All" is ``.*``)."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    out = out.replace("$__range", rate_interval)
    return _VARIABLE.sub(".*", out)


def legend(template: str, labels: dict[str, str]) -> str:
    """``"p99 {{phase}}"`` with ``{"phase": "delivery"}`` -> ``"p99 delivery"``."""
    text = _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template or "")
    return text.strip() or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def select_panels(dashboard: dict[str, Any], titles: Sequence[str]) -> list[dict[str, Any]]:
    by_title = {p.get("title"): p for p in walk_panels(dashboard.get("panels") or [])}
    missing = [title for title in titles if title not in by_title]
    if missing:
        raise RenderError(f"no panel titled {', '.join(map(repr, missing))} in the dashboard")
    return [by_title[title] for title in titles]


# --- Prometheus ------------------------------------------------------------------------


def query_range(
    base_url: str, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    """The ``result`` of ``/api/v1/query_range`` (a matrix)."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - operator's URL
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = json.load(exc).get("error", exc.reason)
        raise RenderError(f"Prometheus rejected {expr!r}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise RenderError(f"cannot query Prometheus at {base_url}: {exc}") from None
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@dataclass(frozen=True, slots=True)
class Window:
    """The time range drawn, the resolution and the value of ``$__rate_interval``."""

    start: float
    end: float
    step: float
    rate_interval: str


def panel_series(panel: dict[str, Any], base_url: str, window: Window) -> list[Series]:
    out = []
    for target in panel.get("targets") or []:
        if not target.get("expr"):
            continue
        expr = substitute(target["expr"], window.rate_interval)
        matrix = query_range(base_url, expr, window.start, window.end, window.step)
        for item in matrix:
            points = tuple(
                (float(t), float(v)) for t, v in item["values"] if not math.isnan(float(v))
            )
            out.append(Series(legend(target.get("legendFormat", ""), item["metric"]), points))
    return out


# --- drawing ---------------------------------------------------------------------------


def _format(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def render(
    panels: Sequence[tuple[dict[str, Any], list[Series]]], title: str, end: float, out: Path
) -> None:
    """Draw stat tiles in a top band and time series in a grid below; write a PNG."""
    import matplotlib as mpl  # noqa: PLC0415 - optional extra, only for this subcommand

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    clock = datetime.fromtimestamp(end, tz=UTC).strftime("%H:%M:%S UTC")
    stats = [(p, s) for p, s in panels if p.get("type") == "stat"]
    charts = [(p, s) for p, s in panels if p.get("type") != "stat"]
    columns = 3
    chart_rows = max(1, math.ceil(len(charts) / columns))
    figure = plt.figure(figsize=(18, 2.2 + 3.6 * chart_rows), dpi=80)
    figure.suptitle(title, fontsize=16, x=0.01, ha="left")
    grid = figure.add_gridspec(
        1 + chart_rows,
        1,
        height_ratios=[0.45] + [1.0] * chart_rows,
        top=0.94,
        bottom=0.05,
        left=0.05,
        right=0.98,
    )
    band = grid[0].subgridspec(1, max(1, len(stats)))
    for index, (panel, series) in enumerate(stats):
        axis = figure.add_subplot(band[0, index])
        axis.set_axis_off()
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        last = [s.points[-1][1] for s in series if s.points]
        text = _format(sum(last), unit) if last else "no data"
        axis.text(0.5, 0.38, text, ha="center", va="center", fontsize=26, weight="bold")
        axis.text(0.5, 0.92, panel.get("title", ""), ha="center", va="center", fontsize=11)
    body = grid[1:].subgridspec(chart_rows, columns, hspace=0.45, wspace=0.22)
    for index, (panel, series) in enumerate(charts):
        axis = figure.add_subplot(body[index // columns, index % columns])
        axis.set_title(panel.get("title", ""), fontsize=11, loc="left")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "short")
        log_scale = defaults.get("custom", {}).get("scaleDistribution", {}).get("type") == "log"
        for line in series:
            points = [(t, v) for t, v in line.points if v > 0 or not log_scale]
            if points:
                times = [(t - end) / 60.0 for t, _ in points]
                axis.plot(times, [v for _, v in points], label=line.legend, linewidth=1.4)
        if log_scale:
            axis.set_yscale("log")
        axis.set_xlabel(f"minutes before {clock}", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.set_ylabel({"s": "seconds", "ops": "per second"}.get(unit, ""), fontsize=8)
        axis.grid(alpha=0.3)
        if series:
            axis.legend(fontsize=7, loc="upper left", ncol=2)
        else:
            axis.text(0.5, 0.5, "no data", ha="center", transform=axis.transAxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
