"""``pectrack render-dashboard``: panel selection, macro expansion, legends, drawing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.dev.render import (
    DEFAULT_PANELS,
    RenderError,
    Series,
    legend,
    render,
    select_panels,
    substitute,
)
from tests.deploy.promql import DASHBOARDS

OVERVIEW = json.loads((DASHBOARDS / "pectrack-overview.json").read_text())


def test_default_panels_exist_in_the_overview() -> None:
    """Every key panel the renderer draws by default is a panel of the overview."""
    chosen = select_panels(OVERVIEW, DEFAULT_PANELS)
    assert [p["title"] for p in chosen] == list(DEFAULT_PANELS)


def test_a_missing_panel_is_an_error() -> None:
    """Asking for a title the dashboard lacks names it instead of drawing nothing."""
    with pytest.raises(RenderError, match="'No such panel'"):
        select_panels(OVERVIEW, ["Messages in flight", "No such panel"])


def test_panels_of_collapsed_rows_are_found() -> None:
    """Panels nested in a collapsed row can be drawn too."""
    assert select_panels(OVERVIEW, ["Mailbox status"])[0]["type"] == "table"


def test_macros_and_variables_are_expanded_as_grafana_does() -> None:
    """$__rate_interval takes the given window; a multi-value variable becomes .*."""
    expr = 'sum(rate(x_total{mailbox=~"$mailbox"}[$__rate_interval])) / ${other}'
    assert substitute(expr, "30s") == 'sum(rate(x_total{mailbox=~".*"}[30s])) / .*'


def test_legend_templates_use_series_labels() -> None:
    """``{{phase}}`` takes the label's value; an empty template lists the labels."""
    assert legend("p99 {{phase}}", {"phase": "delivery"}) == "p99 delivery"
    assert legend("", {"b": "2", "a": "1"}) == "a=1,b=2"
    assert legend("", {}) == "value"


def test_render_writes_a_png(tmp_path: Path) -> None:
    """A stat tile and a log-scale chart end up in a PNG file."""
    stat, chart = select_panels(
        OVERVIEW, ["Overdue messages", "Delivery latency percentiles by phase"]
    )
    points = tuple((1000.0 + i, float(10 + i)) for i in range(30))
    out = tmp_path / "x" / "overview.png"
    render(
        [(stat, [Series("overdue", ((1000.0, 3.0),))]), (chart, [Series("p99", points)])],
        "test",
        1030.0,
        out,
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
