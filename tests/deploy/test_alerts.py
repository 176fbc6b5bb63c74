"""Alert rules: valid, unit-tested with ``promtool test rules``, and only real metric names;
the Alertmanager inhibition of per-mailbox alerts during a provider outage, on a real
Alertmanager."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.dev.embedded import free_port, wait_for_port
from tests.deploy.promql import (
    ALERT_TESTS,
    ALERTS,
    alert_rules,
    exported_metric_names,
    metric_names,
    require_binary,
)

ALERTMANAGER = ALERTS.parent / "alertmanager.yaml"
AM_CONFIG = ALERTS.parents[1] / "kubernetes" / "base" / "alertmanager-config.yaml"
DOCS_URL = "https://pectrack.example/docs/"  # deploy/kubernetes/generate.py: DOCS_URL

REQUIRED_ALERTS = {
    "PecManyMailboxesDown",
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
        assert url == f"{DOCS_URL}operations.md#{rule['alert'].lower()}", rule["alert"]
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


def _rule(name: str) -> dict[str, Any]:
    [rule] = [r for r in alert_rules() if r["alert"] == name]
    return rule


def test_inhibition_matches_the_alerts_it_names() -> None:
    """The inhibit rule's source and target are real alerts, the label both must share is
    one both carry, the aggregate fires before the per-mailbox alert, and the
    AlertmanagerConfig of the Kubernetes base says the same as alertmanager.yaml."""
    [rule] = yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname = "PecManyMailboxesDown"']
    assert rule["target_matchers"] == ['alertname = "PecMailboxDown"']
    aggregate, single = _rule("PecManyMailboxesDown"), _rule("PecMailboxDown")
    assert rule["equal"] == ["namespace", "job"]
    assert "count by (namespace, job)" in aggregate["expr"]  # its only labels
    assert int(aggregate["for"].removesuffix("m")) < int(single["for"].removesuffix("m"))
    [k8s] = yaml.safe_load(AM_CONFIG.read_text())["spec"]["inhibitRules"]
    assert k8s["sourceMatch"] == [{"name": "alertname", "value": "PecManyMailboxesDown"}]
    assert k8s["targetMatch"] == [{"name": "alertname", "value": "PecMailboxDown"}]
    assert k8s["equal"] == rule["equal"]


def test_alertmanager_config_is_valid() -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with deploy/prometheus/alertmanager.yaml; its API URL."""
    binary = shutil.which("prometheus-alertmanager") or require_binary("alertmanager")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={ALERTMANAGER}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30, process)
        yield f"http://127.0.0.1:{port}/api/v2"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _alert(name: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": "critical", **labels}}


def test_a_provider_outage_inhibits_the_per_mailbox_alerts(alertmanager: str) -> None:
    """With PecManyMailboxesDown firing for job pectrack-agent, that job's PecMailboxDown
    alerts are inhibited; another job's or another namespace's are not, nor the aggregate."""
    ns = "pectrack"
    alerts = [
        _alert("PecManyMailboxesDown", namespace=ns, job="pectrack-agent"),
        _alert("PecMailboxDown", namespace=ns, job="pectrack-agent", instance="a", mailbox="m1"),
        _alert("PecMailboxDown", namespace=ns, job="pectrack-agent", instance="a", mailbox="m2"),
        _alert("PecMailboxDown", namespace=ns, job="other-agent", instance="b", mailbox="n1"),
        _alert("PecMailboxDown", namespace="staging", job="pectrack-agent", mailbox="s1"),
    ]
    request = urllib.request.Request(
        f"{alertmanager}/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    state: dict[str, str] = {}
    for _ in range(100):  # alerts are ingested asynchronously
        with urllib.request.urlopen(f"{alertmanager}/alerts", timeout=10) as response:
            found = json.load(response)
        state = {
            a["labels"].get("mailbox", a["labels"]["alertname"]): a["status"]["state"]
            for a in found
        }
        if len(state) == len(alerts) and "unprocessed" not in state.values():
            break
        time.sleep(0.1)
    assert state == {
        "PecManyMailboxesDown": "active",
        "m1": "suppressed",
        "m2": "suppressed",
        "n1": "active",
        "s1": "active",
    }
