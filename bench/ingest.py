"""Ingest benchmark: a real Dovecot, the embedded broker and a ``pectrack agent`` process.

Reports
  1. initial sync: time until N mailboxes x M messages are all in ``pec.raw``;
  2. steady state with N mailboxes in IDLE: delay from APPEND on the server to the
     record in Kafka (p50/p99);
  3. agent memory per mailbox (RSS of the agent process with N mailboxes idle, minus
     the RSS of the same agent with one mailbox, divided by N - 1).

Run as root from the repository root (Dovecot runs mail as uid ``mail``)::

    .venv/bin/python -m bench.ingest --mailboxes 1000 --messages 20 --appends 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.records import message_id
from bench.common import PECTRACK
from pipeline.dev.embedded import EmbeddedBroker, free_port
from pipeline.dev.procstat import TICK, cpu_seconds, processes, stat_fields
from tests.support.agent import write_config
from tests.support.dovecot import Dovecot, raise_inotify_limit
from tests.support.mail import message


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a daemon and its children: reaped ones (cutime/cstime) and live ones."""
    total = 0
    for member, fields in processes():
        if member == pid:
            total += sum(int(f) for f in fields[11:15])
        elif int(fields[3]) == pid:  # same session as the master
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def metric(port: int, name: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


class Agent:
    """The agent as a subprocess with its /metrics on a free port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        argv = [*PECTRACK, "agent", "--config", str(config)]
        argv += ["--metrics-port", str(self.port), "--log-level", "warning"]
        self.log = log.open("ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)

    def started_cpu(self, timeout: float) -> float:
        """Agent CPU seconds once its /metrics answers (imports and start-up done)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                metric(self.port, "pec_imap_connected_mailboxes")
                return cpu_seconds(self.proc.pid)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"agent /metrics not up after {timeout}s")

    def wait_connected(self, count: int, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if metric(self.port, "pec_imap_connected_mailboxes") >= count:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{count} mailboxes not connected after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def dovecot_fetch_rate(server: Dovecot, users: list[int]) -> tuple[int, float, float, float]:
    """Dovecot's own rate: ``UID FETCH 1:* (UID INTERNALDATE BODY.PEEK[])`` of each user's
    INBOX, one plain connection at a time (login included, as for the agent).

    The answer is read off the socket and thrown away unparsed, so the time is the
    server's: ``(messages, seconds in FETCH, seconds in all with the logins, Dovecot CPU
    seconds in all)``.
    """
    dovecot_cpu = tree_cpu_seconds(server.master_pid() or 0)
    count = 0
    fetch_seconds = 0.0
    started = time.monotonic()
    for index in users:
        messages, seconds = _fetch_inbox(server, index)
        count += messages
        fetch_seconds += seconds
    seconds = time.monotonic() - started
    cpu = tree_cpu_seconds(server.master_pid() or 0) - dovecot_cpu
    return count, fetch_seconds, seconds, cpu


def _fetch_inbox(server: Dovecot, index: int) -> tuple[int, float]:
    """Messages in one user's INBOX and the seconds its UID FETCH took."""
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        buffer = bytearray(b"\r\n")  # every answer's line then starts after a CRLF

        def until(end: bytes) -> bytes:
            while True:
                at = buffer.find(end)
                if at >= 0:
                    stop = buffer.find(b"\r\n", at + len(end))
                    if stop >= 0:
                        text = bytes(buffer[:stop])
                        del buffer[:stop]  # keeps the CRLF ahead of the next line
                        return text
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("Dovecot closed the connection")
                buffer.extend(chunk)

        def command(tag: bytes, text: str) -> bytes:
            sock.sendall(tag + b" " + text.encode() + b"\r\n")
            return until(b"\r\n" + tag + b" ")

        until(b"\r\n* OK")
        command(b"a1", f"LOGIN {server.user(index)} {server.password(index)}")
        command(b"a2", "EXAMINE INBOX")
        fetching = time.monotonic()
        answer = command(b"a3", "UID FETCH 1:* (UID INTERNALDATE BODY.PEEK[])")
        seconds = time.monotonic() - fetching
        command(b"a4", "LOGOUT")
    return answer.count(b" FETCH (UID "), seconds


def print_dovecot_rate(server: Dovecot, users: list[int]) -> float:
    fetched, fetch_seconds, all_seconds, cpu = dovecot_fetch_rate(server, users)
    rate = fetched / fetch_seconds
    print(f"Dovecot alone: {fetched} messages from {len(users)} mailboxes, one plain"
          f" connection at a time, answers read unparsed: {rate:.0f} msg/s in UID FETCH"
          f" ({fetched / all_seconds:.0f} msg/s with connect and login; Dovecot CPU"
          f" {cpu / max(fetched, 1) * 1000:.3f} ms/msg with them)")  # fmt: skip
    return rate


class Tail:
    """Reads a topic from its beginning in the background, counting records and noting
    when each latency probe (by Message-ID) arrived.

    Counting what was read, not ``end_offsets``: the embedded broker answers
    ListOffsets(latest) with the last batch's base offset + 1 (pipeline/kafka/read.py).
    """

    def __init__(self, bootstrap: str, topic: str, probe: bytes) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.count = 0
        self.seen: dict[bytes, float] = {}
        self.probe = probe  # the Message-ID prefix of the latency probes it times
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            auto_offset_reset="earliest",  # an empty new partition: not "latest"
        )
        await consumer.start()
        while not (consumer.partitions_for_topic(self.topic) or set()):
            await consumer.topics()
            await asyncio.sleep(0.2)
        parts = [TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in batch.values():
                    self.count += len(records)
                    for record in records:
                        if record.value is not None and self.probe in record.value[:4096]:
                            self.seen.setdefault(message_id(record.value) or b"", now)
        finally:
            await consumer.stop()

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count - len(self.seen) < count:  # latency probes not counted
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.count} < {count} records after {timeout}s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def measure_latency(
    server: Dovecot, tail: Tail, users: list[int], *, appends: int, rate: float, tag: str
) -> list[tuple[float, float]]:
    """APPEND ``appends`` messages over ``users``' INBOXes: ``(APPEND time, seconds until
    the record was read from Kafka)`` of each that arrived."""
    sent: dict[bytes, float] = {}

    def append_all() -> None:
        for n in range(appends):
            index = users[(n * 7919) % len(users)]  # spread over the mailboxes
            raw = message(f"lat-{tag}-{n}", body_bytes=2000)
            sent[message_id(raw) or b""] = time.monotonic()
            server.append(server.user(index), "INBOX", raw)
            time.sleep(1.0 / rate)

    thread = threading.Thread(target=append_all, daemon=True)
    thread.start()
    deadline = time.monotonic() + appends / rate + 60
    while time.monotonic() < deadline:
        if not thread.is_alive() and all(k in tail.seen for k in sent):
            break
        await asyncio.sleep(0.2)
    thread.join()
    return [(sent[k], tail.seen[k] - sent[k]) for k in sent if k in tail.seen]


def delay_summary(delays: list[float], expected: int) -> str:
    if not delays:
        return f"n=0 missing={expected}"
    delays = sorted(delays)
    return (f"n={len(delays)} p50={percentile(delays, 50) * 1000:.0f} ms"
            f" p99={percentile(delays, 99) * 1000:.0f} ms max={delays[-1] * 1000:.0f} ms"
            f" missing={expected - len(delays)}")  # fmt: skip


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def fill(server: Dovecot, args: argparse.Namespace) -> None:
    filled = time.monotonic()
    for index in range(1, args.mailboxes + 1):
        raws = [message(f"m{index}-{n}", body_bytes=args.size) for n in range(args.messages)]
        server.deliver(server.user(index), "INBOX", raws)
    print(f"filled {args.mailboxes} x {args.messages} in {time.monotonic() - filled:.1f}s")


async def one_mailbox_rss(
    args: argparse.Namespace, server: Dovecot, broker: EmbeddedBroker, work: Path, tail: Tail
) -> int:
    """RSS (KiB) of an agent with mailbox 1 synced and idle; starts ``tail`` on pec.raw."""
    one_dir = work / "one"
    one_dir.mkdir()
    one = Agent(write_config(one_dir, broker, server, [1], folders=("INBOX",)), work / "a.log")
    try:
        one.wait_connected(1, 60)
        await tail.start()
        await tail.wait(args.messages, 60)
        await asyncio.sleep(2)
        return rss_kib(one.proc.pid)
    finally:
        one.stop()


async def run(args: argparse.Namespace) -> None:
    raise_inotify_limit(max(4096, args.mailboxes * 2))
    work = Path(tempfile.mkdtemp(prefix="pectrack-bench-"))
    with Dovecot(users=args.mailboxes + args.live) as server, EmbeddedBroker() as broker:
        fill(server, args)

        tail = Tail(broker.bootstrap, "pec.raw", b"lat-idle-")
        baseline = await one_mailbox_rss(args, server, broker, work, tail)

        all_dir = work / "all"
        all_dir.mkdir()
        users = list(range(1, args.mailboxes + 1))
        config = write_config(
            all_dir, broker, server, users, folders=("INBOX", "Sent"), command_timeout=60
        )
        sample = users[: max(1, min(args.baseline_mailboxes, len(users)))]
        dovecot_rate = print_dovecot_rate(server, sample)
        broker_cpu = cpu_seconds(broker.pid or 0)
        dovecot_cpu = tree_cpu_seconds(server.master_pid() or 0)
        load = os.getloadavg()[0]
        started = time.monotonic()
        agent = Agent(config, work / "agent.log")
        profiler = start_profiler(args.profile, agent.proc.pid)
        try:
            boot_cpu = agent.started_cpu(60)
            await tail.wait(args.mailboxes * args.messages, 600)
            sync = time.monotonic() - started
            cpu = cpu_seconds(agent.proc.pid)
            user = int(stat_fields(agent.proc.pid)[11]) / TICK
            stop_profiler(profiler)
            broker_cpu = cpu_seconds(broker.pid or 0) - broker_cpu
            dovecot_cpu = tree_cpu_seconds(server.master_pid() or 0) - dovecot_cpu
            total = (args.mailboxes - 1) * args.messages  # box 1 was synced by the first agent
            print(f"initial sync: {total} messages ({args.size} B bodies) from {args.mailboxes}"
                  f" mailboxes in {sync:.1f}s = {total / sync:.0f} msg/s"
                  f" (CPU: agent {cpu:.1f}s, broker {broker_cpu:.1f}s,"
                  f" Dovecot {dovecot_cpu:.1f}s; load average {load:.1f} at the start)")  # fmt: skip  # noqa: E501
            per_msg = cpu / total * 1000
            synced = (cpu - boot_cpu) / total * 1000
            print(f"agent CPU per message: {per_msg:.3f} ms ({synced:.3f} ms after start-up;"
                  f" user {user / cpu:.0%}, system {1 - user / cpu:.0%})"
                  f" | agent: {total / cpu:.0f} msg/s per agent core"
                  f" | Dovecot alone: {dovecot_rate:.0f} msg/s on one connection"
                  f" | goal: <= 0.25 ms and >= 3,000 msg/s per core")  # fmt: skip
            agent.wait_connected(args.mailboxes, 120)
            time.sleep(3)  # all mailboxes back in IDLE
            rss = rss_kib(agent.proc.pid)
            per_box = (rss - baseline) / max(args.mailboxes - 1, 1)
            print(f"agent RSS: {rss / 1024:.1f} MiB with {args.mailboxes} idle mailboxes,"
                  f" {baseline / 1024:.1f} MiB with 1: {per_box:.1f} KiB per mailbox")  # fmt: skip
            samples = await measure_latency(
                server, tail, users, appends=args.appends, rate=args.rate, tag="idle"
            )
            print(f"APPEND -> Kafka over {args.mailboxes} IDLE mailboxes: "
                  + delay_summary([d for _, d in samples], args.appends))  # fmt: skip
            errors = metric(agent.port, 'pec_imap_errors_total{kind="timeout"}')
            print(f"IMAP timeouts during the run: {errors:.0f}")
        finally:
            agent.stop()
            await tail.stop()
        if args.live:
            await live_during_backfill(args, server, broker, work)


def start_profiler(path: str, pid: int) -> subprocess.Popen[bytes] | None:
    if not path:
        return None
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
         "-f", "flamegraph" if path.endswith(".svg") else "raw", "-o", path, "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(2)  # SIGINT: py-spy writes its output
        profiler.wait(60)


async def live_during_backfill(
    args: argparse.Namespace, server: Dovecot, broker: EmbeddedBroker, work: Path
) -> None:
    """The same N x M history read again from scratch (new cursor and record topics) by
    an agent that also holds ``--live`` mailboxes with no history: once those are in
    IDLE, APPENDs to them while the backfill runs; their APPEND -> Kafka delay."""
    backfill = list(range(1, args.mailboxes + 1))
    live = list(range(args.mailboxes + 1, args.mailboxes + args.live + 1))
    directory = work / "backfill"
    directory.mkdir()
    config = write_config(
        directory, broker, server, live + backfill, folders=("INBOX", "Sent"), command_timeout=60
    )  # live first: they take the first connect slots
    text = config.read_text().replace(
        "[kafka]\n",
        '[kafka]\ntopic = "bench.backfill"\ncursor_topic = "bench.backfill-cursors"\n'
        'dead_letter_topic = "bench.backfill-dlq"\n',
    )
    config.write_text(text)
    history = args.mailboxes * args.messages + args.appends  # the steady phase's APPENDs too
    # The topic exists (with leaders) before the reader assigns it: a consumer that
    # assigned a just-created topic waited for a metadata refresh (minutes) here.
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("bench.backfill", 3, 1)])
    finally:
        await admin.close()
    await asyncio.sleep(1)
    tail = Tail(broker.bootstrap, "bench.backfill", b"lat-backfill-")
    await tail.start()
    agent = Agent(config, work / "backfill.log")
    try:
        started = time.monotonic()
        for index in live:
            name = f'pec_imap_mailbox_up{{mailbox="box-{index:04d}"}}'
            while True:
                try:
                    if metric(agent.port, name) == 1:
                        break
                except OSError:
                    pass
                if time.monotonic() - started > 120:
                    raise RuntimeError("live mailboxes not in IDLE after 120s")
                await asyncio.sleep(0.1)
        behind = tail.count
        print(f"backfill: {args.live} live mailboxes in IDLE after"
              f" {time.monotonic() - started:.1f}s; {behind} of {history} history records"
              f" published by then")  # fmt: skip
        done_at: list[float] = []

        async def watch() -> None:
            await tail.wait(history, 900)
            done_at.append(time.monotonic())

        watcher = asyncio.create_task(watch())
        samples = await measure_latency(
            server, tail, live, appends=args.live_appends, rate=args.rate, tag="backfill"
        )
        await watcher
        end = done_at[0]
        during = [d for at, d in samples if at + d <= end]
        after = [d for at, d in samples if at + d > end]
        print(f"backfill of {history} messages from {args.mailboxes} mailboxes:"
              f" {end - started:.1f}s from agent start")  # fmt: skip
        print(f"APPEND -> Kafka over {args.live} IDLE mailboxes during the backfill: "
              + delay_summary(during, len(during) or args.live_appends)
              + f" ({len(after)} more samples after its end: "
              + delay_summary(after, len(after)) + ")")  # fmt: skip
    finally:
        agent.stop()
        await tail.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="per mailbox, initial sync")
    parser.add_argument("--size", type=int, default=18_000, help="body bytes per message")
    parser.add_argument("--appends", type=int, default=300, help="latency samples")
    parser.add_argument("--rate", type=float, default=20.0, help="appends per second")
    parser.add_argument(
        "--baseline-mailboxes", type=int, default=200,
        help="mailboxes fetched by the Dovecot-alone baseline",
    )  # fmt: skip
    parser.add_argument(
        "--live", type=int, default=50,
        help="IDLE mailboxes APPENDed to during a second, full backfill (0: skip that phase)",
    )  # fmt: skip
    parser.add_argument("--live-appends", type=int, default=200, help="APPENDs during it")
    parser.add_argument(
        "--profile",
        default="",
        help="py-spy profile of the agent's sync: a flame graph if *.svg, else raw stacks",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: Dovecot needs to run mail as uid `mail`")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
