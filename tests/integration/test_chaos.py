"""Seeded chaos: kill -9 every component during a sustained simulator run, then compare.

Simulated PEC traffic goes into a real Dovecot (IMAP APPEND, wave after wave) -> a real
``pectrack agent`` -> the embedded broker (reached through a TCP proxy) -> two real
``pectrack worker`` processes. Between waves a ``random.Random(seed)`` picks when to
strike and what: SIGKILL the agent, either worker, the whole Dovecot, or cut every broker
connection (``CHAOS_BROKER=kill`` also SIGKILLs the broker, durable on a local S3 store:
needs ``moto[server]``). Each victim comes back after a random outage. At the end:

- every message in Dovecot reached ``pec.raw`` (agent duplicates are allowed, they carry
  the same mailbox/folder/UID);
- after dedup on event id, ``pec.state-changes`` holds exactly the oracle's events for
  the order the agent published, and ``pec.message-state`` the simulator's final states;
- no mailbox is stuck (every cursor at the folder's last UID, every mailbox up);
- no password in any log, topic or ``/metrics``.

Knobs (``make soak`` raises them): ``CHAOS_SEED`` (default 7), ``CHAOS_MESSAGES`` (80),
``CHAOS_ROUNDS`` (one per fault kind), ``CHAOS_BROKER`` (``cut`` | ``kill``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from agents.publish import read_cursors
from pipeline.dev.embedded import LocalS3, free_port
from pipeline.simulate.traffic import TrafficItem, generate_traffic
from tests.streams.oracle import EventShape, expected_events, final_states
from tests.support.dovecot import Dovecot
from tests.support.forensics import (
    cursor_history,
    event_lines,
    missing_uids,
    offset_gaps,
)
from tests.support.kafka import TopicTail, header, read_all
from tests.support.proxy import ProxiedBroker
from tests.support.workers import WorkerProcess

from .conftest import AgentProcess
from .test_streams import latest_states, shapes, worker_args

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, 9, tzinfo=UTC)
SEED = int(os.environ.get("CHAOS_SEED", "7"))
MESSAGES = int(os.environ.get("CHAOS_MESSAGES", "80"))
BROKER_MODE = os.environ.get("CHAOS_BROKER", "cut")
FAULTS = ["agent", "worker-a", "worker-b", "imap", "broker-cut"] + (
    ["broker-kill"] if BROKER_MODE == "kill" else []
)
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", str(len(FAULTS))))
SETTLE_TIMEOUT = float(os.environ.get("CHAOS_SETTLE_TIMEOUT", "240"))


@dataclass
class Report:
    """What the run did, printed at the end (and shown by pytest on failure)."""

    seed: int
    sent: int = 0
    ingested: int = 0
    republished: int = 0
    state_changes: int = 0
    repeats_before_dedup: int = 0
    lost: int = 0
    duplicates_after_dedup: int = 0
    recovery_seconds: float = 0.0
    worker_exits: int = 0
    faults: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (
            f"CHAOS seed={self.seed} broker={BROKER_MODE} faults={self.faults}\n"
            f"  messages sent (APPENDed to Dovecot): {self.sent}\n"
            f"  ingested (distinct in pec.raw):      {self.ingested}"
            f" (+{self.republished} agent re-publications)\n"
            f"  state-change events:                 {self.state_changes}"
            f" ({self.repeats_before_dedup} repeats before dedup on id)\n"
            f"  lost:                                {self.lost}\n"
            f"  duplicates visible after dedup:      {self.duplicates_after_dedup}\n"
            f"  recovery time after the last fault:  {self.recovery_seconds:.1f} s\n"
            f"  workers that exited on their own:    {self.worker_exits}"
            " (restarted, as a supervisor would)"
        )


def agent_config(directory: Path, bootstrap: str, server: Dovecot, ids: list[str]) -> Path:
    """Agent TOML: mailbox id = the simulator's mailbox, user N = the N-th of ``ids``."""
    lines = [
        "[kafka]", f'bootstrap = "{bootstrap}"', "idempotence = false", "partitions = 4",
        "[limits]", "command_timeout = 10", "backoff_base = 0.2", "backoff_cap = 2",
        "poll_seconds = 2", "batch_max_messages = 20",
        "[mailbox_defaults]", f'host = "{server.host}"', f"port = {server.port}",
        'tls = "plain"', 'folders = ["INBOX", "Sent"]',
    ]  # fmt: skip
    for index, box_id in enumerate(ids, start=1):
        secret = directory / f"secret-{index}"
        secret.write_text(server.password(index))
        lines += ["[[mailbox]]", f'id = "{box_id}"', f'user = "{server.user(index)}"',
                  f'password_file = "{secret.name}"']  # fmt: skip
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def kill_dovecot(server: Dovecot) -> None:
    """SIGKILL the master and every Dovecot process (its process group), then reap."""
    pid = server.master_pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    server.stop()  # reaps the master, SIGKILLs any straggler of its session


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of ``name{labels}`` in a /metrics text (0 if absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


async def all_topic_values(bootstrap: str) -> list[bytes]:
    """Keys, values and header values of every record of every topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = await consumer.topics()
    finally:
        await consumer.stop()
    out: list[bytes] = []
    for topic in sorted(topics):
        for record in await read_all(bootstrap, topic):
            out += [record.key or b"", record.value or b""]
            out += [bytes(value) for _, value in record.headers]
    return out


async def stuck_mailboxes(
    server: Dovecot, users: dict[str, int], bootstrap: str, agent_port: int
) -> list[str]:
    """Mailboxes down, or folders whose cursor is not at the folder's highest UID."""
    problems = []
    metrics = metrics_text(agent_port)
    cursors = await read_cursors(bootstrap, "pec.agent.cursors")
    for box_id, index in users.items():
        if sample(metrics, "pec_imap_mailbox_up", f'mailbox="{box_id}"') != 1:
            problems.append(f"{box_id} down")
        for folder in ("INBOX", "Sent"):
            uids = await asyncio.to_thread(server.flags, server.user(index), folder)
            cursor = cursors.get(f"{box_id}/{folder}".encode())
            if (cursor.last_uid if cursor else 0) != max(uids, default=0):
                problems.append(f"{box_id}/{folder} cursor {cursor} < UID {max(uids)}")
    return problems


def deliver_wave(server: Dovecot, users: dict[str, int], wave: list[TrafficItem]) -> None:
    """APPEND a wave, each (mailbox, folder) in arrival order."""
    groups: dict[tuple[str, str], list[bytes]] = {}
    for item in wave:
        groups.setdefault((item.mailbox, item.folder), []).append(item.raw)
    for (mailbox, folder), raws in groups.items():
        server.append_many(server.user(users[mailbox]), folder, raws)


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def published_order(
    records: list[tuple[str, str, str, str, bytes]], items: list[TrafficItem]
) -> tuple[list[TrafficItem], int]:
    """The traffic items in the order the agent published them (each UID once), and how
    many records were re-publications of a UID already published."""
    by_content: dict[tuple[str, str, bytes], list[TrafficItem]] = {}
    for item in reversed(items):  # IMAP serves LF-stored messages with CRLF
        by_content.setdefault((item.mailbox, item.folder, crlf(item.raw)), []).append(item)
    seen: set[tuple[str, str, str, str]] = set()
    order: list[TrafficItem] = []
    for mailbox, folder, uidvalidity, uid, raw in records:
        if (mailbox, folder, uidvalidity, uid) in seen:
            continue
        seen.add((mailbox, folder, uidvalidity, uid))
        candidates = by_content[(mailbox, folder, crlf(raw))]  # byte-identical duplicates:
        order.append(candidates.pop() if len(candidates) > 1 else candidates[0])  # in turn
    return order, len(records) - len(order)


async def wait_for_events(
    bootstrap: str,
    want: Counter[EventShape],
    timeout: float,
    tick: Callable[[], object],
    quiet: float = 4.0,
) -> tuple[list[bytes], float]:
    """State-change values once every wanted event arrived and ``quiet`` s passed with no
    new record; and when the last wanted one was first seen (monotonic)."""
    deadline = time.monotonic() + timeout
    complete_at: float | None = None
    values: list[bytes] = []
    last_len, last_change = -1, time.monotonic()
    async with TopicTail(bootstrap, "pec.state-changes") as tail:
        while time.monotonic() < deadline:
            tick()
            values = [r.value for r in await tail.read() if r.value]
            now = time.monotonic()
            if len(values) != last_len:
                last_len, last_change = len(values), now
            got, _ = shapes(values)
            if complete_at is None and not want - got:
                complete_at = now
            if complete_at is not None and now - last_change >= quiet:
                return values, complete_at
            await asyncio.sleep(0.5)
    return values, complete_at or time.monotonic()


async def forensics(  # noqa: PLR0917 - a diagnostic, called once
    bootstrap: str,
    server: Dovecot,
    users: dict[str, int],
    raw: list[ConsumerRecord[bytes, bytes]],
    want: Counter[EventShape],
    values: list[bytes],
) -> str:
    """Where each lost message and each doubled event went (printed on failure)."""
    lines: list[str] = []
    in_imap: dict[tuple[str, str], list[int]] = {}
    for box_id, index in users.items():
        for folder in ("INBOX", "Sent"):
            flags = await asyncio.to_thread(server.flags, server.user(index), folder)
            in_imap[(box_id, folder)] = list(flags)
    cursors = await read_all(bootstrap, "pec.agent.cursors")
    for (box_id, folder), uids in missing_uids(in_imap, raw).items():
        lines.append(f"missing from pec.raw: {box_id}/{folder} UIDs {uids}")
        history = cursor_history(cursors, box_id, folder)
        lines.append(f"  cursor records (offset:last_uid): {history}")
        near = sorted(
            (r.partition, r.offset, int(header(r, "uid")))
            for r in raw
            if (header(r, "mailbox"), header(r, "folder")) == (box_id, folder)
        )
        lines.append(f"  its pec.raw records (partition, offset, uid): {near}")
    for topic in ("pec.raw", "pec.agent.cursors", "pec.receipts", "pec.state-changes"):
        records = raw if topic == "pec.raw" else await read_all(bootstrap, topic)
        lines += offset_gaps(records)
    got, _ = shapes(values)
    extra, short = got - want, want - got
    unexpected = sorted(extra.elements(), key=str)  # shapes hold None (no recipient)
    lines.append(f"events the oracle does not expect (after dedup): {unexpected}")
    lines.append(f"events expected and missing: {sorted(short.elements(), key=str)}")
    keys = {shape[0] for shape in (extra + short)}
    lines += event_lines(values, keys)
    return "\n".join(lines) + "\n"


async def test_chaos_kill_every_component_then_match_the_oracle(tmp_path: Path) -> None:
    """Seeded SIGKILLs of agent, workers, Dovecot and broker connections mid-run: nothing
    lost, nothing doubled after dedup on id, final states exact, no mailbox stuck, and no
    password anywhere (logs, topics, /metrics)."""
    rng = random.Random(SEED)
    report = Report(SEED)
    print(f"\nchaos seed {SEED} (reproduce: CHAOS_SEED={SEED} CHAOS_MESSAGES={MESSAGES} "
          f"CHAOS_ROUNDS={ROUNDS} CHAOS_BROKER={BROKER_MODE} pytest {__file__})")  # fmt: skip
    items = generate_traffic(SEED, MESSAGES, 4, START)
    ids = sorted({item.mailbox for item in items})
    users = {box_id: n for n, box_id in enumerate(ids, start=1)}
    schedule = rng.sample(FAULTS, len(FAULTS)) + [
        rng.choice(FAULTS) for _ in range(ROUNDS - len(FAULTS))
    ]
    size = -(-len(items) // (len(schedule) + 1))  # contiguous waves, in arrival order
    waves = [items[i : i + size] for i in range(0, size * (len(schedule) + 1), size)]
    with ExitStack() as stack:
        s3 = stack.enter_context(LocalS3()) if BROKER_MODE == "kill" else None
        broker = stack.enter_context(ProxiedBroker(s3=s3, log_path=tmp_path / "broker.log"))
        server = stack.enter_context(Dovecot(users=len(ids)))
        config = agent_config(tmp_path, broker.bootstrap, server, ids)
        agent_port = free_port()
        agent = AgentProcess(config, tmp_path / "agent.log", "--metrics-port", str(agent_port))
        stack.callback(agent.cleanup)
        args = worker_args(tmp_path)
        workers = {
            name: WorkerProcess(broker, tmp_path / name, *args) for name in ("worker-a", "worker-b")
        }
        for worker in workers.values():
            stack.callback(worker.stop)
            worker.start()

        def supervise() -> None:
            """Restart a worker that exited by itself (a deployment's restart policy);
            a worker killed by the schedule is restarted by the schedule."""
            for name, worker in workers.items():
                if name not in down and worker.proc is not None and worker.proc.poll() is not None:
                    print(f"  {name} exited with {worker.proc.returncode}: restarted")
                    report.worker_exits += 1
                    worker.start()

        down: set[str] = set()
        agent.start()
        last_restart = time.monotonic()
        for wave, fault in zip(waves, [*schedule, None], strict=True):
            supervise()
            await asyncio.to_thread(deliver_wave, server, users, wave)
            report.sent += len(wave)
            if fault is None:
                break
            await asyncio.sleep(rng.uniform(0.05, 1.5))  # strike mid-processing
            outage = rng.uniform(0.5, 4.0)
            report.faults.append(f"{fault}:{outage:.1f}s")
            print(f"  fault {fault}, back after {outage:.1f} s")
            if fault == "agent":
                agent.kill()
            elif fault in workers:
                down.add(fault)
                workers[fault].kill()
            elif fault == "imap":
                await asyncio.to_thread(kill_dovecot, server)
            elif fault == "broker-cut":
                broker.proxy.down()
            else:
                broker.kill()
            await asyncio.sleep(outage)
            if fault == "agent":
                agent.start()
            elif fault in workers:
                workers[fault].start()
                down.discard(fault)
            elif fault == "imap":
                await asyncio.to_thread(server.start)
            elif fault == "broker-cut":
                broker.proxy.up()
            else:
                broker.start()
            last_restart = time.monotonic()

        # -- everything APPENDed reaches pec.raw --
        deadline = time.monotonic() + SETTLE_TIMEOUT
        async with TopicTail(broker.bootstrap, "pec.raw") as raw_tail:
            while True:
                raw = list(await raw_tail.read())
                ingested = {
                    (header(r, "mailbox"), header(r, "folder"), header(r, "uid")) for r in raw
                }
                if len(ingested) >= len(items) or time.monotonic() > deadline:
                    break
                supervise()
                await asyncio.sleep(0.5)
        records = [
            (header(r, "mailbox"), header(r, "folder"), header(r, "uidvalidity"),
             header(r, "uid"), r.value or b"")
            for r in raw
        ]  # fmt: skip
        order, report.republished = published_order(records, items)
        report.ingested = len(order)
        sent_content = Counter((i.mailbox, i.folder, i.arrival_order) for i in items)
        got_content = Counter((i.mailbox, i.folder, i.arrival_order) for i in order)
        report.lost = sum((sent_content - got_content).values())

        # -- events: the oracle over the published order, deduplicated on id --
        want = expected_events(order)
        values, complete_at = await wait_for_events(
            broker.bootstrap, want, SETTLE_TIMEOUT, supervise
        )
        got, report.repeats_before_dedup = shapes(values)
        report.state_changes = sum(got.values())
        report.lost += sum((want - got).values())
        report.duplicates_after_dedup = sum((got - want).values())
        report.recovery_seconds = complete_at - last_restart
        states = await latest_states(broker.bootstrap)
        print(report.text())
        if report.lost or report.duplicates_after_dedup:
            where = tmp_path / "forensics.txt"
            where.write_text(await forensics(broker.bootstrap, server, users, raw, want, values))
            print(f"  forensics: {where}\n{where.read_text()[:20000]}")

        # -- no mailbox stuck --
        deadline = time.monotonic() + 30
        while stuck := await stuck_mailboxes(server, users, broker.bootstrap, agent_port):
            assert time.monotonic() < deadline, stuck
            await asyncio.sleep(0.5)
        agent_metrics = metrics_text(agent_port)
        for name, worker in workers.items():
            assert worker.proc is not None
            assert worker.proc.poll() is None, f"{name} died: {worker.log_text()}"

        # -- no credentials anywhere --
        exposed = [
            agent.log_path.read_bytes(),
            *(w.log.read_bytes() for w in workers.values()),
            agent_metrics.encode(),
            *(metrics_text(w.metrics_port).encode() for w in workers.values()),
            *await all_topic_values(broker.bootstrap),
        ]
        for index in users.values():
            secret = server.password(index).encode()
            assert not [blob for blob in exposed if secret in blob], "a password leaked"

    assert report.lost == 0, report.text()
    assert report.duplicates_after_dedup == 0, report.text()
    assert {k: v for k, v in states.items() if k in final_states(items)} == final_states(items)
    assert report.ingested == len(items)
    assert report.state_changes > 0
