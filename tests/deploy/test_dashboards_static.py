"""Dashboards and their provisioning, checked offline (no Grafana server exists here)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.deploy.promql import (
    ROOT,
    all_dashboard_exprs,
    dashboard_paths,
    exported_metric_names,
    metric_names,
    panels,
    promtool_check_exprs,
    substitute,
)

PROVISIONING = ROOT / "grafana" / "provisioning"


def test_dashboards_have_unique_uids_and_panel_ids() -> None:
    """Each dashboard has its own uid and unique panel ids (Grafana drops duplicates)."""
    uids = []
    for path in dashboard_paths():
        dashboard = json.loads(path.read_text())
        uids.append(dashboard["uid"])
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(dashboard):
            if panel["type"] != "row":
                assert panel.get("targets"), f"{path.name}: {panel['title']} has no query"
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len(uids) == len(set(uids))


def test_overview_covers_the_sre_signals() -> None:
    """The overview reads every signal the runbook relies on."""
    overview = ROOT / "grafana" / "dashboards" / "pectrack-overview.json"
    used = set().union(*(metric_names(e.expr) for e in all_dashboard_exprs()))
    assert overview.exists()
    assert {
        "pec_delivery_latency_seconds_bucket",
        "pec_receipts_total",
        "pec_delivery_failures_total",
        "pec_messages_overdue",
        "pec_messages_inflight",
        "pec_orphan_receipts",
        "pec_signature_failures_total",
        "pec_processing_lag_seconds",
        "pec_consumer_lag_records",
        "pec_dlq_total",
        "pec_imap_connected_mailboxes",
        "pec_ingest_last_sync_timestamp_seconds",
        "pec_ingest_cursor_lag_messages",
        "pec_imap_errors_total",
        "pec_backfill_messages_todo",
        "pec_backfill_messages_done_total",
        "pec_backfill_eta_seconds",
    } <= used


def test_overview_has_a_backfill_row_with_progress_and_eta() -> None:
    """The "Backfill" row (issue #20): to do, share done, ETA, per-mailbox detail."""
    overview = json.loads((ROOT / "grafana" / "dashboards" / "pectrack-overview.json").read_text())
    ordered = sorted(panels(overview), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    start = next(
        i for i, p in enumerate(ordered) if p["type"] == "row" and p["title"] == "Backfill"
    )
    end = next(
        (i for i in range(start + 1, len(ordered)) if ordered[i]["type"] == "row"), len(ordered)
    )
    row = ordered[start + 1 : end]
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    assert {"pec_backfill_messages_todo", "pec_backfill_messages_done_total",
            "pec_backfill_eta_seconds"} <= metric_names(exprs)  # fmt: skip
    assert any("by (mailbox)" in t["expr"] for p in row for t in p["targets"])


def test_dashboards_name_only_exported_metrics() -> None:
    """A panel naming a metric the code does not export fails (it would show no data)."""
    exported = exported_metric_names()
    unknown = [
        (e.panel, name)
        for e in all_dashboard_exprs()
        for name in sorted(metric_names(e.expr))
        if name not in exported
    ]
    assert not unknown, sorted(unknown)


def test_exported_names_catch_a_misspelling() -> None:
    """The name check knows counters only by their ``_total`` samples."""
    exported = exported_metric_names()
    assert "pec_receipts_total" in exported
    assert "pec_receipts" not in exported
    assert "pec_ingest_fetch_duration_seconds_bucket" in exported


def test_every_expr_passes_promtool_syntax_check(tmp_path: Path) -> None:
    """Every expression, macros substituted, is valid PromQL (`promtool check rules`)."""
    exprs = [substitute(e.expr) for e in all_dashboard_exprs()]
    result = promtool_check_exprs(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_syntax_check_rejects_a_broken_expr(tmp_path: Path) -> None:
    """The offline check fails on a malformed expression (it is not a no-op)."""
    result = promtool_check_exprs(["sum(rate(pec_dlq_total[1m])"], tmp_path)
    assert result.returncode != 0


def test_provisioning_points_at_the_dashboards() -> None:
    """Provisioning names a Prometheus datasource and the path compose mounts dashboards at."""
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "pectrack.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(f":{path}:ro") and "grafana/dashboards" in m for m in mounts)
