"""Worker state at scale: N tracked messages on one worker, per state store, in one run.

For each ``--counts`` N and each ``--stores`` store (a fresh embedded broker each time,
the topics created, ONE ``pectrack worker`` owning all ``--partitions``):

1. *start*: one submission, wait for its ``submitted`` event (the worker owns its
   partitions and has everything loaded); its RSS then is the *base*;
2. *load*: N submissions on ``pec.submissions`` (one recipient each, never answered: they
   stay in flight), produced with aiokafka in a background task as fast as the worker takes
   them (at most ``--window`` ahead of its events). *Load rate* = N / (CreateTime of the
   N-th ``submitted`` event on ``pec.state-changes`` - first produce). Events are counted
   from the topic's end offsets, corrected for the embedded broker's answer (it reports
   the last batch's base offset + 1: the last batch is read), so 10^6 events are never
   decoded; their types are checked on a sample. *CPU per submission* of the worker and of
   the broker = /proc CPU seconds during the load / N;
3. *RSS beyond the base* = (worker RSS after the load - base) / N: bytes per tracked message;
   *disk* = the worker's datadir (the RocksDB table; empty with memory://) / N;
4. *idle CPU*: the worker's CPU % over ``--idle-seconds`` with no traffic (the deadline
   timer scans every 30 s, its default; the default 65 s covers two scans);
5. *recovery after SIGKILL*: the worker is killed, started again on the same ``--datadir``
   with the same settings, and one new submission produced at once; the time until its
   ``submitted`` event (record CreateTime) counts from the kill and from the restart. Two
   table lookups (the first and last loaded message) then check the table came back.
   The worker's RSS after recovery is given too, also beyond the base per message: the
   table as rebuilt, without what the load left behind in the allocator, and again
   ``--rescan-seconds`` later, once the deadline timer has scanned the rebuilt table.

Baseline: the ``memory://`` store (faust's in-memory table, rebuilt from the changelog
on start) measured in the same run; figures of other stores carry a ratio to it (> 1:
better). Goals (issue #13) at 1,000,000 tracked messages on one worker: RSS <= 1 KB per
tracked message beyond the base, idle CPU < 2 %, recovery after SIGKILL <= 15 s, worker
CPU per submission <= 0.5 ms. The *met* column is filled only for N >= 1,000,000, and is
computed on the unrounded figure.

``--stores rocksdb`` needs a worker with ``--store`` (``rocksdb://``, rocksdict
installed); a build without it says so and reports no figure for that store.

    .venv/bin/python -m bench.state                          # 20,000, memory and rocksdb
    .venv/bin/python -m bench.state --counts 100000,1000000  # the issue's sizes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.common import PECTRACK, Row, rss_kib, table
from bench.e2e import Workers
from pipeline.dev.embedded import EmbeddedBroker, free_port
from pipeline.dev.procstat import cpu_seconds
from pipeline.simulate.ca import default_pki
from pipeline.streams.settings import StreamSettings
from pipeline.streams.topics import ensure_topics

STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}
BASELINE = "memory"
GOAL_COUNT = 1_000_000  # the goals below are set at this many tracked messages
RSS_GOAL_BYTES = 1000.0  # "1 KB" read strictly
IDLE_GOAL_PERCENT = 2.0
RECOVERY_GOAL_SECONDS = 15.0
CPU_GOAL_MS = 0.5
MAILBOXES = 40
# Longer than any run: a submission that is never answered must not turn overdue (and
# cause more events) while the bench watches it; the deadline timer still scans.
ACCEPTANCE_TIMEOUT_SECONDS = 30 * 86400.0


@dataclass
class Measured:
    """One store at one N."""

    store: str
    count: int
    load_seconds: float  # first produce -> N-th submitted event (CreateTime)
    worker_cpu: float  # seconds, during the load
    broker_cpu: float
    bench_cpu: float  # this process: producer and event counting
    base_rss_kib: int
    loaded_rss_kib: int
    disk_bytes: int  # the worker's datadir after the load (the RocksDB table)
    idle_seconds: float
    idle_cpu: float  # worker CPU seconds over idle_seconds
    from_kill: float  # seconds, kill -> the new submission's event
    from_restart: float  # seconds, restart -> that event
    recovered_rss_kib: int
    rescanned_rss_kib: int  # after recovery and one more deadline scan
    lookups: str  # what the table lookups after recovery found

    @property
    def rate(self) -> float:
        return self.count / self.load_seconds if self.load_seconds > 0 else 0.0

    @property
    def rss_per_message(self) -> float:
        return (self.loaded_rss_kib - self.base_rss_kib) * 1024 / self.count

    @property
    def recovered_per_message(self) -> float:
        """RSS beyond the base after recovery: the table rebuilt, no transient garbage."""
        return (self.recovered_rss_kib - self.base_rss_kib) * 1024 / self.count

    @property
    def rescanned_per_message(self) -> float:
        return (self.rescanned_rss_kib - self.base_rss_kib) * 1024 / self.count

    @property
    def idle_percent(self) -> float:
        return 100 * self.idle_cpu / self.idle_seconds


def directory_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def mailbox(n: int) -> str:
    return f"ufficio-{n % MAILBOXES:02d}"


def msgid(tag: str, n: int) -> str:
    return f"<state.{tag}.{n}@bench.client>"


def submission(tag: str, n: int) -> tuple[bytes, bytes]:
    """A ``pec.submissions`` record (schemas/submission.schema.json): key, value."""
    box = mailbox(n)
    value = {
        "mailbox": box,
        "msgid": msgid(tag, n),
        "sender": f"{box}@pec.example.it",
        "recipients": [f"protocollo{n % 997}@pec.comune.example.it"],
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    return box.encode(), orjson.dumps(value)


@dataclass
class Progress:
    produced: int = 0
    events: int = 0  # submitted events of this phase seen so far
    first_produce: float = 0.0  # wall clock, s


class EventCounter:
    """Records on ``pec.state-changes`` without decoding them: end offsets, raised to the
    last record really stored (Tansu answers the last batch's base offset + 1) by reading
    that batch, whose newest CreateTime is also kept."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=256 << 10,
        )
        self.reported: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = dict.fromkeys(self.tps, 0)
        self.last_ms = 0  # CreateTime of the newest record read

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def total(self) -> int:
        reported = await self.consumer.end_offsets(self.tps)
        moved = {tp: end for tp, end in reported.items() if end > self.reported.get(tp, 0)}
        for tp, end in moved.items():
            self.consumer.seek(tp, end - 1)
        deadline = time.monotonic() + 10
        todo = set(moved)
        while todo and time.monotonic() < deadline:
            batch = await self.consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                if records:
                    self.ends[tp] = max(self.ends[tp], records[-1].offset + 1)
                    self.last_ms = max(self.last_ms, *(r.timestamp for r in records))
                    todo.discard(tp)
        for tp in moved:
            if tp not in todo:
                self.reported[tp] = reported[tp]
        return sum(self.ends.values())

    async def sample(self, per_partition: int = 5) -> list[dict[str, Any]]:
        """The last records of each partition, decoded (a check of what was counted)."""
        out: list[dict[str, Any]] = []
        for tp, end in self.ends.items():
            if end == 0:
                continue
            self.consumer.seek(tp, max(0, end - per_partition))
            batch = await self.consumer.getmany(tp, timeout_ms=2000)
            out += [orjson.loads(r.value) for r in batch.get(tp, [])][-per_partition:]
        return out

    async def find(
        self,
        subject: str,
        since: dict[TopicPartition, int],
        timeout: float,
        alive: Callable[[], None],
    ) -> int:
        """CreateTime (ms) of the first event about ``subject`` after offsets ``since``;
        ``alive`` raises once the process that should send it has exited."""
        for tp, offset in since.items():
            self.consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            batch = await self.consumer.getmany(*self.tps, timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if orjson.loads(record.value).get("subject") == subject:
                        return int(record.timestamp)
        raise TimeoutError(f"no event for {subject} after {timeout:.0f}s")


class Submitter:
    """Produces submissions as batches per partition (aiokafka's own key partitioner)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.partitioner = DefaultPartitioner()

    async def send(
        self, tag: str, numbers: range, progress: Progress | None = None, window: int = 0
    ) -> None:
        partitions = sorted(await self.producer.partitions_for(self.topic))
        batches: dict[int, Any] = {}
        acks = []
        for n in numbers:
            while progress and window and progress.produced - progress.events >= window:
                await asyncio.sleep(0.05)
            key, value = submission(tag, n)
            partition = self.partitioner(key, partitions, partitions)
            batch = batches.get(partition) or self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                acks.append(await self.producer.send_batch(batch, self.topic, partition=partition))
                batch = self.producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            batches[partition] = batch
            if progress is not None:
                if not progress.first_produce:
                    progress.first_produce = time.time()
                progress.produced += 1
            if n % 2000 == 0:
                await asyncio.sleep(0)  # let the counter run
        for partition, batch in batches.items():
            acks.append(await self.producer.send_batch(batch, self.topic, partition=partition))
        await asyncio.gather(*acks)


def store_flag_available() -> bool:
    """Does this build's ``pectrack worker`` take ``--store``?"""
    help_text = subprocess.run(
        [*PECTRACK, "worker", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    return "--store" in help_text


def unavailable(store: str, has_flag: bool) -> str | None:
    """Why ``store`` cannot be measured with this build, or None."""
    if store == BASELINE:
        return None
    if not has_flag:
        return "pectrack worker has no --store flag in this build"
    if store == "rocksdb" and importlib.util.find_spec("rocksdict") is None:
        return "rocksdict is not installed in this venv"
    return None


def _lookup(proc: subprocess.Popen[bytes], tag: str, n: int) -> str:
    """The worker's web lookup of message ``n``: its recipient's state, or what failed."""
    argv = [str(a) for a in cast(Sequence[Any], proc.args)]
    port = argv[argv.index("--web-port") + 1]
    query = urllib.parse.urlencode({"mailbox": mailbox(n), "msgid": msgid(tag, n)})
    url = f"http://127.0.0.1:{port}/message/?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"#{n}: {exc}"
    states = [r.get("state") for r in data.get("recipients", [])]
    return f"#{n}: {','.join(str(s) for s in states) or data}"


@dataclass
class Session:
    """One store at one N: the broker's clients and the worker, phase by phase."""

    args: argparse.Namespace
    settings: StreamSettings
    broker: EmbeddedBroker
    counter: EventCounter
    submitter: Submitter
    workers: Workers
    extra: list[str]  # worker flags beyond e2e.Workers' own
    work: Path
    tag: str  # in every msgid: runs never share a key
    label: str

    @property
    def pid(self) -> int:
        return self.workers.procs[0].pid

    async def wait_events(self, wanted: int, progress: Progress, base: int, what: str) -> None:
        """Poll until ``wanted`` events beyond ``base``; a progress line every few seconds."""
        args = self.args
        started = time.monotonic()
        last_line = last_change = started
        while True:
            self.workers.check()
            seen = await self.counter.total() - base
            now = time.monotonic()
            if seen != progress.events:
                last_change = now
            progress.events = seen
            if seen >= wanted:
                return
            if now - last_line >= args.progress_seconds:
                last_line = now
                print(
                    f"    {self.label} {what}: produced {progress.produced:,}, events {seen:,},"
                    f" {now - started:.0f}s",
                    flush=True,
                )
            if now - last_change > args.stall_timeout:
                raise SystemExit(f"{self.label}: no new event for {args.stall_timeout:.0f}s")
            await asyncio.sleep(0.5)

    async def start(self, count: int) -> int:
        """One submission through the fresh worker; returns the events on the topic then."""
        started = time.monotonic()
        await self.submitter.send(self.tag, range(count, count + 1))
        await self.wait_events(1, Progress(), 0, "start")
        print(f"    {self.label}: worker ready after {time.monotonic() - started:.1f}s", flush=True)
        await asyncio.sleep(2.0)
        return await self.counter.total()

    async def load(self, count: int, base: int) -> tuple[float, float, float, float]:
        """``count`` submissions: seconds to the last event; CPU of worker, broker, bench."""
        progress = Progress()
        broker_pid = self.broker.pid or 0
        cpu0, broker0, bench0 = cpu_seconds(self.pid), cpu_seconds(broker_pid), time.process_time()
        producing = asyncio.create_task(
            self.submitter.send(self.tag, range(count), progress, self.args.window)
        )
        try:
            await self.wait_events(count, progress, base, "load")
        finally:
            if not producing.done():
                producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing
        cpu = cpu_seconds(self.pid) - cpu0, cpu_seconds(broker_pid) - broker0
        bench_cpu = time.process_time() - bench0
        seconds = self.counter.last_ms / 1000 - progress.first_produce
        if progress.events != count:
            raise SystemExit(f"{self.label}: {progress.events:,} events for {count:,} submissions")
        odd = [
            e
            for e in await self.counter.sample()
            if e.get("data", {}).get("to_state") != "submitted"
        ]
        if odd:
            raise SystemExit(f"{self.label}: events other than submitted: {odd[:2]}")
        print(
            f"    {self.label}: loaded in {seconds:.1f}s = {count / seconds:,.0f}/s;"
            f" CPU worker {cpu[0]:.1f}s, broker {cpu[1]:.1f}s, bench {bench_cpu:.1f}s",
            flush=True,
        )
        return seconds, cpu[0], cpu[1], bench_cpu

    async def idle(self) -> tuple[float, float]:
        """Wall seconds and worker CPU seconds with no traffic."""
        idle0, started = cpu_seconds(self.pid), time.monotonic()
        while (left := self.args.idle_seconds - (time.monotonic() - started)) > 0:
            await asyncio.sleep(min(left, self.args.progress_seconds * 3))
            self.workers.check()
            spent = time.monotonic() - started
            percent = 100 * (cpu_seconds(self.pid) - idle0) / spent
            print(f"    {self.label}: idle {spent:.0f}s, worker CPU {percent:.2f} %", flush=True)
        return time.monotonic() - started, cpu_seconds(self.pid) - idle0

    async def recover(self, count: int) -> tuple[float, float, int, int, str]:
        """SIGKILL, restart on the same datadir, one new submission at once: seconds from
        the kill and from the restart to its event, RSS (KiB) then and ``--rescan-seconds``
        later (a deadline scan of the rebuilt table in between), the table lookups."""
        await self.counter.total()
        since = dict(self.counter.ends)
        killed = time.time()
        self.workers.procs[0].send_signal(signal.SIGKILL)
        self.workers.procs[0].wait()
        restarted = time.time()
        self.workers = Workers(self.settings, 1, self.work, self.extra)
        await self.submitter.send(self.tag, range(count + 1, count + 2))
        timeout = self.args.recovery_timeout
        wanted = msgid(self.tag, count + 1)
        event_ms = await self.counter.find(wanted, since, timeout, self.workers.check)
        rss = rss_kib(self.pid)
        proc = self.workers.procs[0]
        lookups = await asyncio.gather(
            asyncio.to_thread(_lookup, proc, self.tag, 0),
            asyncio.to_thread(_lookup, proc, self.tag, count - 1),
        )
        await asyncio.sleep(self.args.rescan_seconds)
        self.workers.check()
        rescanned = rss_kib(self.pid)
        return (
            event_ms / 1000 - killed,
            event_ms / 1000 - restarted,
            rss,
            rescanned,
            "; ".join(lookups),
        )


async def _measure(store: str, count: int, args: argparse.Namespace, work: Path) -> Measured:
    label = f"{store}, {count:,}"
    anchor = work / "anchor.pem"
    anchor.write_bytes(default_pki().anchor_pem())
    with EmbeddedBroker(port=free_port(), log_path=work / "broker.log") as broker:
        settings = StreamSettings(
            broker=broker.bootstrap, app_id="bench-state", partitions=args.partitions,
            trust=str(anchor),
        )  # fmt: skip
        await ensure_topics(settings)
        # A stable group instance id, as the Kubernetes StatefulSet gives each pod: the
        # restarted worker takes its member's place instead of waiting for its session.
        extra = [
            "--acceptance-timeout-seconds", str(ACCEPTANCE_TIMEOUT_SECONDS),
            "--group-instance-id", "bench-state-worker",
        ]  # fmt: skip
        if args.store_flag:
            extra += ["--store", STORES[store]]
        counter = EventCounter(broker.bootstrap, settings.state_changes_topic, args.partitions)
        await counter.start()
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            enable_idempotence=False,
            linger_ms=20,
            max_batch_size=256 << 10,
            acks=-1,
        )
        await producer.start()
        submitter = Submitter(producer, settings.submissions_topic)
        workers = Workers(settings, 1, work, extra)
        session = Session(
            args, settings, broker, counter, submitter, workers, extra, work, f"{store}{count}",
            label,
        )  # fmt: skip
        try:
            base_events = await session.start(count)
            base_rss = rss_kib(session.pid)
            seconds, worker_cpu, broker_cpu, bench_cpu = await session.load(count, base_events)
            await asyncio.sleep(2.0)
            loaded_rss = rss_kib(session.pid)
            disk = directory_bytes(work / "w0")
            idle_seconds, idle_cpu = await session.idle()
            recovery = await session.recover(count)
            from_kill, from_restart, recovered_rss, rescanned_rss, lookups = recovery
        finally:
            session.workers.stop()
            await producer.stop()
            await counter.stop()
    result = Measured(
        store, count, seconds, worker_cpu, broker_cpu, bench_cpu, base_rss, loaded_rss, disk,
        idle_seconds, idle_cpu, from_kill, from_restart, recovered_rss, rescanned_rss, lookups,
    )  # fmt: skip
    print(
        f"    {label}: RSS base {base_rss / 1024:,.1f} MiB, loaded {loaded_rss / 1024:,.1f} MiB"
        f" ({result.rss_per_message:,.0f} B/message); datadir {disk / 2**20:,.1f} MiB;"
        f" idle CPU {result.idle_percent:.2f} %;"
        f" recovery after SIGKILL {from_kill:.2f}s from the kill, {from_restart:.2f}s from the"
        f" restart, RSS then {recovered_rss / 1024:,.1f} MiB,"
        f" {args.rescan_seconds:.0f}s later {rescanned_rss / 1024:,.1f} MiB; lookups {lookups}",
        flush=True,
    )
    return result


def _rows(r: Measured, b: Measured | None) -> list[Row]:
    """One store at one N; ``b``: the baseline store at the same N (None for itself)."""
    name = f"{r.store}, {r.count:,} tracked"
    label = f"{BASELINE}, same N" if b else ""

    def row(
        what: str,
        value: float,
        unit: str,
        baseline: float | None,
        goal: tuple[str, bool] = ("", False),
        *,
        lower: bool = True,
    ) -> Row:
        target, met = goal
        return Row(f"{what}, {name}", value, unit, baseline, label, target,
                   (met if target and r.count >= GOAL_COUNT else None),  # goals are at 10^6
                   lower_is_better=lower)  # fmt: skip

    cpu = r.worker_cpu / r.count * 1000
    return [
        row("load rate", r.rate, "msg/s", b.rate if b else None, lower=False),
        row("worker CPU per submission", cpu, "ms", b.worker_cpu / b.count * 1000 if b else None,
            (f"<= {CPU_GOAL_MS} ms at 10^6", cpu <= CPU_GOAL_MS)),
        row("broker CPU per submission", r.broker_cpu / r.count * 1000, "ms",
            b.broker_cpu / b.count * 1000 if b else None),
        row("RSS beyond base per message", r.rss_per_message, "B",
            b.rss_per_message if b else None,
            (f"<= 1 KB ({RSS_GOAL_BYTES:,.0f} B) at 10^6", r.rss_per_message <= RSS_GOAL_BYTES)),
        row("worker datadir per message (disk)", r.disk_bytes / r.count, "B",
            b.disk_bytes / b.count if b else None),
        row(f"idle CPU over {r.idle_seconds:.0f} s", r.idle_percent, "%",
            b.idle_percent if b else None,
            (f"< {IDLE_GOAL_PERCENT:.0f} % at 10^6", r.idle_percent < IDLE_GOAL_PERCENT)),
        row("recovery after SIGKILL, from the kill", r.from_kill, "s",
            b.from_kill if b else None,
            (f"<= {RECOVERY_GOAL_SECONDS:.0f} s at 10^6", r.from_kill <= RECOVERY_GOAL_SECONDS)),
        row("recovery, from the restart", r.from_restart, "s", b.from_restart if b else None),
        row("RSS after recovery", r.recovered_rss_kib / 1024, "MiB",
            b.recovered_rss_kib / 1024 if b else None),
        row("RSS beyond base per message after recovery", r.recovered_per_message, "B",
            b.recovered_per_message if b else None),
        row("RSS beyond base per message after recovery + a scan", r.rescanned_per_message, "B",
            b.rescanned_per_message if b else None),
    ]  # fmt: skip


def rows_for(results: Sequence[Measured]) -> list[Row]:
    """Each figure next to its goal; other stores against the baseline store at the same N."""
    base = {r.count: r for r in results if r.store == BASELINE}
    rows: list[Row] = []
    for r in results:
        rows += _rows(r, base.get(r.count) if r.store != BASELINE else None)
    return rows


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pectrack-bench-state-") as tmp:
        yield Path(tmp)


async def run(args: argparse.Namespace) -> tuple[list[Measured], list[str]]:
    args.store_flag = store_flag_available()
    notes: list[str] = []
    stores = []
    for store in args.stores:
        reason = unavailable(store, args.store_flag)
        if reason:
            notes.append(f"{store}: not measured ({reason}); no figure for it in this table")
            print(f"state: {notes[-1]}", flush=True)
        else:
            stores.append(store)
    results: list[Measured] = []
    with _workdir() as work:
        for count in args.counts:
            for store in stores:
                run_dir = work / f"{store}-{count}"
                run_dir.mkdir()
                load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
                print(f"state: {store} store, {count:,} tracked messages (load {load})", flush=True)
                results.append(await _measure(store, count, args, run_dir))
    return results, notes


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STORES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"stores are {', '.join(STORES)}; not {unknown}")
    return names


def _counts(text: str) -> list[int]:
    try:
        counts = [int(n.replace("_", "")) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("counts must be positive")
    return counts


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
        prog="python -m bench.state",
        description=(__doc__ or "").splitlines()[0],
        epilog="What is measured: see this module's docstring and bench/README.md.",
    )
    out.add_argument(
        "--counts",
        type=_counts,
        default=[20_000],
        help="tracked messages per run, comma-separated (e.g. 100000,1000000)",
    )
    out.add_argument(
        "--stores",
        type=_names,
        default=list(STORES),
        help=f"comma-separated, of {', '.join(STORES)} (default: all)",
    )
    out.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of every topic, all owned by the one worker",
    )
    out.add_argument(
        "--window",
        type=int,
        default=20_000,
        help="most submissions produced ahead of the worker's events; 0: no limit",
    )
    out.add_argument(
        "--idle-seconds",
        type=float,
        default=65.0,
        help="idle CPU window after the load (the deadline timer runs every 30 s)",
    )
    out.add_argument(
        "--rescan-seconds",
        type=float,
        default=35.0,
        help="RSS again this long after recovery (a deadline scan: every 30 s)",
    )
    out.add_argument(
        "--recovery-timeout",
        type=float,
        default=600.0,
        help="longest wait for the new submission's event after a restart",
    )
    out.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="give up when no new event arrived for this long",
    )
    out.add_argument("--progress-seconds", type=float, default=5.0)  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> tuple[list[Row], list[str]]:
    args = parser().parse_args(argv)
    results, notes = asyncio.run(run(args))
    rows = rows_for(results)
    print()
    print(table("Worker state: N tracked messages on one worker, per store", rows))
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()
    return rows, notes


if __name__ == "__main__":
    main()
