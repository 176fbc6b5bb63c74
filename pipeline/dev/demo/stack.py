"""The demo's processes wired together, and the loop that watches them.

:meth:`DemoStack.start` brings up, in order: the embedded broker (Tansu), the provider
(pymap IMAP server plus the traffic feed, :mod:`pipeline.dev.demo.provider`), the stream
workers (``pectrack worker``) and the ingest agent (``pectrack agent``), each waited
for on its port. :meth:`DemoStack.watch` then consumes ``pec.state-changes`` (for the
time to the first event and a real lookup key) and redraws :mod:`pipeline.dev.demo.view`
from every process's /metrics until the duration ends or a signal arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from pipeline.dev.demo.feed import demo_mailboxes
from pipeline.dev.demo.orchestrate import Child, Supervisor
from pipeline.dev.demo.view import Snapshot, parse_metrics, render
from pipeline.dev.embedded import find_broker_binary, free_port

__all__ = ["DemoStack", "StackOptions", "lookup_url"]

PARTITIONS = 4
STATE_CHANGES = "pec.state-changes"
APP_ID = "pectrack-demo"


@dataclass(frozen=True, slots=True)
class StackOptions:
    mailboxes: int
    rate: float
    workers: int
    seed: int
    password: str


@dataclass
class WorkerPorts:
    metrics: int
    web: int


@dataclass
class DemoStack:
    supervisor: Supervisor
    run_dir: Path
    options: StackOptions
    out: TextIO = sys.stdout
    broker_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    agent_metrics_port: int = field(default_factory=free_port)
    worker_ports: list[WorkerPorts] = field(default_factory=list)
    first_event_after: float | None = None
    sample_key: str | None = None
    children: dict[str, Child] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # printed above the live table

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def anchor(self) -> Path:
        return self.run_dir / "anchor.pem"

    @property
    def status_file(self) -> Path:
        return self.run_dir / "provider.json"

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _up(self, text: str, since: float) -> None:
        self._say(f"{text}  [{time.monotonic() - since:.1f}s]")

    def start(self, started: float) -> None:
        """Start every process; raise :class:`ChildFailedError` if one does not come up.
        Each line printed says how long after ``started`` (monotonic) the part was up."""
        sup = self.supervisor
        url = f"tcp://127.0.0.1:{self.broker_port}"
        broker = sup.start(
            "broker",
            [str(find_broker_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url],
        )  # fmt: skip
        sup.wait_for_port(broker, self.broker_port, 20)
        self._up(f"  broker    Tansu on {self.bootstrap}, memory storage", started)

        password_file = self.run_dir / "password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.options.password + "\n")
        provider = sup.start(
            "provider",
            [sys.executable, "-m", "pipeline.dev.demo.provider",
             "--port", str(self.imap_port),
             "--mailboxes", str(self.options.mailboxes),
             "--rate", str(self.options.rate),
             "--seed", str(self.options.seed),
             "--password-file", str(password_file),
             "--status", str(self.status_file),
             "--anchor-out", str(self.anchor)],
        )  # fmt: skip
        sup.wait_for_port(provider, self.imap_port, 60)
        self._up(
            f"  imap      pymap on 127.0.0.1:{self.imap_port}, {self.options.mailboxes} "
            f"mailboxes, {self.options.rate:g} msg/s",
            started,
        )

        for index in range(1, self.options.workers + 1):
            ports = WorkerPorts(metrics=free_port(), web=free_port())
            self.worker_ports.append(ports)
            self.children[f"worker{index}"] = sup.start(
                f"worker{index}",
                [sys.executable, "-m", "pectrack", "worker",
                 "--broker", self.bootstrap,
                 "--app-id", APP_ID,
                 "--partitions", str(PARTITIONS),
                 "--trust", str(self.anchor),
                 "--deadline-clock", "event",
                 "--deadline-interval-seconds", "2",
                 "--metrics-port", str(ports.metrics),
                 "--web-port", str(ports.web),
                 "--datadir", str(self.run_dir / f"worker{index}-state"),
                 "--archive", (self.run_dir / "evidence").absolute().as_uri(),
                 "--session-timeout-seconds", "6",  # the broker waits ~half before a join
                 "--log-level", "warning"],
                stage="workers",
            )  # fmt: skip
        config = self._agent_config()
        agent = sup.start(
            "agent",
            [sys.executable, "-m", "pectrack", "agent",
             "--config", str(config),
             "--metrics-port", str(self.agent_metrics_port)],
        )  # fmt: skip
        for index, ports in enumerate(self.worker_ports, start=1):
            sup.wait_for_port(self.children[f"worker{index}"], ports.metrics, 60)
        self._up(f"  workers   {self.options.workers} x pectrack worker, group {APP_ID}", started)
        sup.wait_for_port(agent, self.agent_metrics_port, 60)
        self._up(f"  agent     pectrack agent: {self.options.mailboxes} mailboxes, IDLE", started)

    def _agent_config(self) -> Path:
        lines = [
            "# written by pectrack demo",
            "[kafka]",
            f'bootstrap = "{self.bootstrap}"',
            "idempotence = false  # the embedded broker has no InitProducerId",
            f"partitions = {PARTITIONS}",
            "[limits]",
            "command_timeout = 30",
            "poll_seconds = 5  # Sent is polled; INBOX is pushed by IDLE",
            "idle_seconds = 300",
            "backoff_base = 0.5",
            "backoff_cap = 5",
            "[mailbox_defaults]",
            'host = "127.0.0.1"',
            f"port = {self.imap_port}",
            'tls = "plain"  # loopback only',
            'folders = ["INBOX", "Sent"]',
            'password_file = "password"',
        ]
        for address in demo_mailboxes(self.options.mailboxes):
            lines += ["[[mailbox]]", f'id = "{address}"', f'user = "{address}"']
        path = self.run_dir / "agent.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def print_help_text(self) -> None:
        web = self.worker_ports[0].web
        endpoints = [("agent", self.agent_metrics_port)] + [
            (f"worker{n}", ports.metrics) for n, ports in enumerate(self.worker_ports, start=1)
        ]
        metrics = [
            f"  {'metrics' if n == 0 else '':<10}http://127.0.0.1:{port}/metrics  ({name})"
            for n, (name, port) in enumerate(endpoints)
        ]
        self._say(
            "\n".join(
                [
                    *metrics,
                    f"  lookup    http://127.0.0.1:{web}/message/?key=<mailbox> <msgid>",
                    f"  watch     pectrack events --broker {self.bootstrap}",
                    f"  logs      {self.run_dir}/*.log",
                    "Ctrl-C stops everything.",
                    "",
                ]
            )
        )

    # -- the watch loop ------------------------------------------------------------------

    async def watch(
        self, *, started: float, duration: float, refresh: float, interactive: bool
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopped_by: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            stopped_by.append(sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        consumer = asyncio.create_task(self._follow_events(started))
        watch_started = time.monotonic()
        drawn = 0  # lines of the live block on screen (interactive mode only)
        next_report = 0.0
        try:
            while not stop.is_set():
                self.supervisor.check()
                now = time.monotonic()
                if duration and now - watch_started >= duration:
                    break
                notes, self.notes = self.notes, []
                due = now >= next_report
                if notes or due:
                    # Scrape first, then replace the block in one write: no blank flicker.
                    lines = render(await self.snapshot(now - started)) if interactive or due else []
                    if interactive:  # one screen row per line, or the redraw goes astray
                        width = shutil.get_terminal_size().columns - 1
                        lines = [line[:width] for line in lines]
                    text = "".join(note + "\n" for note in notes)
                    text += "".join(line + "\n" for line in lines)
                    if interactive and drawn:
                        text = f"\x1b[{drawn}F\x1b[J" + text  # back to the block's top
                    self.out.write(text)
                    self.out.flush()
                    drawn = len(lines) if interactive else 0
                    if lines:
                        next_report = now + refresh
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)  # stopping now: a second Ctrl-C can't cut it
        if stopped_by:
            self._say(f"\npectrack demo: {stopped_by[0]}, stopping...")
        snapshot = await self.snapshot(time.monotonic() - started)
        self.out.write("\n".join(["", "final:", *render(snapshot), self._summary(snapshot)]))
        self.out.write("\n")
        self.out.flush()

    @staticmethod
    def _summary(snap: Snapshot) -> str:
        first = f"{snap.first_event_after:.1f}" if snap.first_event_after is not None else "none"
        return (
            f"summary: submitted={snap.submitted} stored={snap.stored} ingested={snap.ingested} "
            f"state_changes={snap.state_changes} delivered={snap.delivered} failed={snap.failed} "
            f"overdue={snap.overdue} in_flight={snap.in_flight} "
            f"signature_failures={snap.signature_failures} first_state_change_s={first}"
        )

    async def snapshot(self, elapsed: float) -> Snapshot:
        worker_urls = [f"http://127.0.0.1:{p.metrics}/metrics" for p in self.worker_ports]
        agent_url = f"http://127.0.0.1:{self.agent_metrics_port}/metrics"
        texts = await asyncio.gather(
            *(asyncio.to_thread(_scrape, url) for url in [agent_url, *worker_urls])
        )
        return Snapshot.build(
            elapsed=elapsed,
            mailboxes=self.options.mailboxes,
            provider=self._provider_status(),
            agent=parse_metrics(texts[:1]),
            workers=parse_metrics(texts[1:]),
            first_event_after=self.first_event_after,
        )

    def _provider_status(self) -> dict[str, object]:
        try:
            status = orjson.loads(self.status_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return status if isinstance(status, dict) else {}

    async def _follow_events(self, started: float) -> None:
        """Note when the first state change is readable, and one key to look up."""
        from aiokafka import AIOKafkaConsumer  # noqa: PLC0415 - heavy import
        from aiokafka.errors import KafkaError  # noqa: PLC0415

        consumer = AIOKafkaConsumer(
            STATE_CHANGES,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            await consumer.start()  # the broker is up: start() only fails if it died
        except KafkaError as exc:
            self.notes.append(f"cannot read {STATE_CHANGES}: {exc}")
            await consumer.stop()
            return
        try:
            async for record in consumer:
                event = orjson.loads(record.value or b"{}")
                data = event.get("data") or {}
                if self.first_event_after is None:
                    self.first_event_after = time.monotonic() - started
                    self.notes.append(
                        f"first state change after {self.first_event_after:.1f}s "
                        f"(command to event on {STATE_CHANGES})"
                    )
                if data.get("to_state") == "delivered" and data.get("key"):
                    self.sample_key = str(data["key"])
                    self._print_lookup(self.sample_key)
                    break
        finally:
            await consumer.stop()

    def _print_lookup(self, key: str) -> None:
        web = self.worker_ports[0].web
        self.notes.append(
            "look up one delivered message (any worker answers, routed to the key's owner):\n"
            f"  curl -sG http://127.0.0.1:{web}/message/ --data-urlencode 'key={key}'\n"
            "and write its delivery dossier (signed receipts, re-verified):\n"
            f"  pectrack evidence --key '{key}' --web http://127.0.0.1:{web} --trust "
            f"{self.anchor} --out dossier"
        )


def lookup_url(web_port: int, key: str) -> str:
    """The message lookup URL on a worker, ``key`` (``<mailbox> <msgid>``) URL-encoded."""
    return f"http://127.0.0.1:{web_port}/message/?key={urllib.parse.quote(key, safe='')}"


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
            body: bytes = response.read()
            return body.decode()
    except (urllib.error.URLError, OSError):
        return ""
