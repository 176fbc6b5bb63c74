"""Alert rules: valid, unit-tested with ``promtool test rules``, and only real metric names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.deploy.promql import (
    ALERT_TESTS,
    ALERTS,
    alert_rules,
    exported_metric_names,
    metric_names,
    require_binary,
)

REQUIRED_ALERTS = {
    "PecDeliveriesOverdue",
    "PecMailboxNotSynced",
    "PecMailboxDown",
    "PecSignatureFailures",
    "PecDeadLettersGrowing",
    "PecPipelineStalled",
    "PecProcessingLagHigh",
    "PecConsumerLagHigh",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts alerts.yaml."""
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    """Every alert fires (and stays quiet) as alerts.test.yaml expects."""
    result = _promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests fail when a threshold moves: they pin behaviour, not just syntax."""
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    text = ALERTS.read_text()
    assert "pec_ingest_last_sync_timestamp_seconds > 900" in text
    (tmp_path / ALERTS.name).write_text(
        text.replace("pec_ingest_last_sync_timestamp_seconds > 900", "_seconds > 3600")
    )
    result = _promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PecMailboxNotSynced" in result.stdout + result.stderr


def test_required_alerts_exist_with_runbook_and_severity() -> None:
    """Each alert the operations runbook documents exists, with severity and runbook link."""
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names
    runbook = (ALERTS.parents[2] / "docs" / "operations.md").read_text().lower()
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert f"### {rule['alert'].lower()}" in runbook, f"no runbook section {rule['alert']}"


def test_alerts_read_only_metrics_the_code_exports() -> None:
    """An alert on a metric name pipeline/metrics.py does not export would never fire."""
    exported = exported_metric_names()
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not exported"


def test_every_alert_is_unit_tested() -> None:
    """alerts.test.yaml has a firing case for every alert rule."""
    tested = set(ALERT_TESTS.read_text().split("alertname: ")[1:])
    tested_names = {chunk.split()[0] for chunk in tested}
    assert {rule["alert"] for rule in alert_rules()} <= tested_names
