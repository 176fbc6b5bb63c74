"""Every dashboard query returns data from a real Prometheus scraping a real pipeline.

The run: the embedded broker, one ``pectrack worker`` and one ``pectrack agent`` (reading a
Dovecot mailbox) as subprocesses, a Prometheus scraping both every second. Simulator
traffic reaches ``pec.raw`` twice over: one mailbox through Dovecot and the agent, the
others produced straight to Kafka (with a submission per sent message, so acceptance
latency is measured, SdI traffic for the e-invoicing row, and one record without a
mailbox, so the dead-letter path runs).
Then each panel expression is evaluated through the HTTP API: it must be valid, non-empty
and not NaN, and may only name metrics the targets actually expose.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.dev.embedded import EmbeddedBroker, free_port, wait_for_port
from pipeline.simulate.ca import default_pki
from pipeline.simulate.sdi import generate_sdi_traffic
from pipeline.simulate.traffic import SENT, TrafficItem, generate_traffic
from tests.deploy.promql import (
    DASHBOARDS,
    PanelExpr,
    alert_rules,
    all_dashboard_exprs,
    metric_names,
    promtool_check_exprs,
    require_binary,
    substitute,
)
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration

START = datetime.fromisoformat("2024-03-01T09:00:00+01:00")
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers
RATE_WINDOW = "3m"
OVERVIEW = (
    DASHBOARDS / "pectrack-overview.json"
)  # longer than the run: every rate() sees the counters before traffic


class Child:
    """A subprocess with its output in a log file; ``stop()`` sends SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def child(argv: list[str], log: Path) -> Iterator[Child]:
    process = Child(argv, log)
    try:
        yield process
    finally:
        process.stop()


def pectrack(*args: str) -> list[str]:
    return [sys.executable, "-m", "pectrack", *args]


class Prometheus:
    """Client of the HTTP API of the test's Prometheus."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # 400 bad_data carries the parser's message
            return json.load(exc)

    def query(self, expr: str) -> Any:
        return self.get("/api/v1/query", query=expr)

    def value(self, expr: str) -> float:
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    async def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"Prometheus not ready after {timeout}s")

    async def wait(self, expr: str, minimum: float, timeout: float, what: Child | str) -> float:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = self.value(expr)
            if value >= minimum:
                return value
            await asyncio.sleep(0.5)
        detail = what if isinstance(what, str) else f"log of {what.log.name}:\n{what.tail()}"
        raise AssertionError(f"{expr} = {value} after {timeout}s, expected >= {minimum}; {detail}")


def write_prometheus_config(directory: Path, worker_port: int, agent_port: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yaml")],
        "scrape_configs": [
            {
                "job_name": "pectrack-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
            },
            {
                "job_name": "pectrack-agent",
                "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}],
            },
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def write_agent_config(
    directory: Path, broker: EmbeddedBroker, server: Dovecot, mailbox: str
) -> Path:
    (directory / "secret").write_text(server.password(1))
    path = directory / "agent.toml"
    path.write_text(
        "\n".join(
            [
                "[kafka]",
                f'bootstrap = "{broker.bootstrap}"',
                "idempotence = false",
                "partitions = 4",
                "[limits]",
                "command_timeout = 10",
                "poll_seconds = 1",
                "backoff_base = 0.2",
                "backoff_cap = 2",
                "[[mailbox]]",
                f'id = "{mailbox}"',
                f'host = "{server.host}"',
                f"port = {server.port}",
                'tls = "plain"',
                f'user = "{server.user(1)}"',
                'password_file = "secret"',
                'folders = ["INBOX", "Sent"]',
            ]
        )
        + "\n"
    )
    return path


def submission(item: TrafficItem) -> bytes:
    """What a sending system puts on ``pec.submissions`` for a message it sent."""
    truth = item.truth
    assert truth.timestamp is not None
    return orjson.dumps(
        {
            "mailbox": item.mailbox,
            "msgid": truth.msgid,
            "sender": truth.sender,
            "recipients": [r.address for r in truth.recipients],
            "submitted_at": truth.timestamp.isoformat(),
        }
    )


async def produce(bootstrap: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def raw_records(items: list[TrafficItem]) -> list[Record]:
    return [
        (
            "pec.raw",
            item.mailbox.encode(),
            item.raw,
            [("mailbox", item.mailbox.encode()), ("folder", item.folder.encode())],
        )
        for item in items
    ]


def evaluate(prom: Prometheus, exprs: list[PanelExpr], exposed: set[str]) -> list[str]:
    """What is wrong with each expression on the live data (empty: all fine)."""
    problems: list[str] = []
    for e in exprs:
        expr = substitute(e.expr, RATE_WINDOW)
        problems.extend(
            f"{e.panel}: {name} is not exposed by any target"
            for name in sorted(metric_names(expr) - exposed)
        )
        answer = prom.query(expr)
        if answer.get("status") != "success":
            problems.append(f"{e.panel}: {expr}: {answer.get('error')}")
            continue
        result = answer["data"]["result"]
        if not result:
            problems.append(f"{e.panel}: {expr}: no data")
        problems.extend(
            f"{e.panel}: {expr}: NaN for {series['metric']}"
            for series in result
            if math.isnan(float(series["value"][1]))
        )
    return problems


@pytest.mark.timeout(120)
async def test_every_dashboard_expr_returns_data_from_a_live_pipeline(tmp_path: Path) -> None:
    """Every panel/variable query is valid, non-empty, not NaN; every alert rule evaluates."""
    prometheus_bin = require_binary("prometheus")
    exprs = all_dashboard_exprs()
    offline = promtool_check_exprs([substitute(e.expr) for e in exprs], tmp_path)
    assert offline.returncode == 0, offline.stdout + offline.stderr

    items = generate_traffic(5, 40, 3, START)
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(default_pki().anchor_pem())
    mailboxes = sorted({item.mailbox for item in items})
    via_imap = [item for item in items if item.mailbox == mailboxes[0]]
    invoices = generate_sdi_traffic(
        random.Random(3), default_pki(), ((mailboxes[1], "amm@pec.example.it"),), 8, START
    )
    direct = [item for item in items if item.mailbox != mailboxes[0]]
    direct += [sdi.traffic_item(len(items) + n) for n, sdi in enumerate(invoices)]
    sent = [item for item in direct if item.folder == SENT and item.truth.msgid]
    half = len(direct) // 2

    worker_port, agent_port, prom_port = free_port(), free_port(), free_port()
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=tmp_path / "broker.log"))
        server = Dovecot(users=1).start()
        stack.callback(server.cleanup)
        worker = stack.enter_context(
            child(
                pectrack(
                    "worker",
                    *("--broker", broker.bootstrap, "--trust", str(anchor)),
                    *("--deadline-clock", "event", "--deadline-interval-seconds", "1"),
                    *("--metrics-port", str(worker_port), "--web-port", str(free_port())),
                    *("--datadir", str(tmp_path / "worker"), "--session-timeout-seconds", "6"),
                    *("--archive", (tmp_path / "evidence").as_uri()),  # the archive row
                ),
                tmp_path / "worker.log",
            )
        )
        wait_for_port("127.0.0.1", worker_port, 30, worker.proc)
        agent_config = write_agent_config(tmp_path, broker, server, mailboxes[0])
        agent = stack.enter_context(
            child(
                pectrack("agent", "--config", str(agent_config), "--metrics-port", str(agent_port)),
                tmp_path / "agent.log",
            )
        )
        wait_for_port("127.0.0.1", agent_port, 30, agent.proc)
        config = write_prometheus_config(tmp_path, worker_port, agent_port)
        prom_proc = stack.enter_context(
            child(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                tmp_path / "prometheus.log",
            )
        )
        wait_for_port("127.0.0.1", prom_port, 20, prom_proc.proc)
        prom = Prometheus(prom_port)
        await prom.ready(20)
        # First scrapes land 5-6 s after start; traffic must come after them so that
        # every rate() sees a counter move. A loaded machine (a worker answering /metrics
        # past the 1 s scrape timeout) took longer than 25 s once: 60.
        await prom.wait('sum(up{job=~"pectrack-.*"})', 2, 60, "both targets scraped")
        await prom.wait("sum(pec_imap_connected_mailboxes)", 1, 20, "agent logged in")

        await produce(
            broker.bootstrap, [("pec.submissions", None, submission(i), []) for i in sent]
        )
        inbox = [i.raw for i in via_imap if i.folder != SENT]
        server.deliver(server.user(1), "Sent", [i.raw for i in via_imap if i.folder == SENT])
        server.deliver(server.user(1), "INBOX", inbox[: len(inbox) // 2])
        await produce(broker.bootstrap, raw_records(direct[:half]))
        await asyncio.sleep(2.5)  # at least two scrapes between the two halves
        server.deliver(server.user(1), "INBOX", inbox[len(inbox) // 2 :])
        await produce(
            broker.bootstrap,
            [*raw_records(direct[half:]), ("pec.raw", None, b"no mailbox header", [])],
        )

        await prom.wait(
            'sum(pec_ingest_messages_total{outcome="published"})',
            len(via_imap),
            30,
            agent,
        )
        await prom.wait(
            'sum(pec_processed_records_total{processor="verify"})',
            len(items) + len(invoices),
            40,
            worker,
        )
        await prom.wait(
            'sum(pec_processed_records_total{processor="invoices"})', len(invoices), 20, worker
        )
        await prom.wait("sum(pec_dlq_total)", 1, 10, worker)
        await asyncio.sleep(2.5)  # the last values scraped

        groups = prom.get("/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == len(alert_rules()), "Prometheus did not load every alert rule"
        unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not unhealthy, unhealthy

        exposed = set(prom.get("/api/v1/label/__name__/values")["data"])
        problems = evaluate(prom, exprs, exposed)
        assert not problems, "\n".join(problems)
        # The check is not a no-op: a counter named without its _total suffix is caught.
        wrong = [PanelExpr("x.json", "misspelled", "sum(rate(pec_receipts[$__rate_interval]))")]
        assert any("pec_receipts is not exposed" in p for p in evaluate(prom, wrong, exposed))

        png = tmp_path / "overview.png"
        rendered = subprocess.run(
            pectrack(
                "render-dashboard",
                *("--prometheus", prom.url, "--dashboard", str(OVERVIEW), "--out", str(png)),
                *("--range", "60", "--step", "1", "--rate-interval", "10s"),
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert rendered.returncode == 0, rendered.stderr
        assert png.read_bytes().startswith(b"\x89PNG"), "render-dashboard wrote no PNG"
        assert png.stat().st_size > 30_000, "a PNG this small has no charts in it"
