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
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.records import message_id
from pipeline.dev.embedded import EmbeddedBroker, free_port
from pipeline.dev.procstat import TICK, cpu_seconds, processes
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
        argv = [sys.executable, "-m", "pectrack", "agent", "--config", str(config)]
        argv += ["--metrics-port", str(self.port), "--log-level", "warning"]
        self.log = log.open("ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)

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


async def total_records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum((await consumer.end_offsets(parts)).values()) if parts else 0
    finally:
        await consumer.stop()


async def wait_records(bootstrap: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await total_records(bootstrap, "pec.raw") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} records after {timeout}s")
        await asyncio.sleep(0.25)


async def measure_latency(
    server: Dovecot, bootstrap: str, mailboxes: int, appends: int, rate: float
) -> list[float]:
    """APPEND ``appends`` messages over the mailboxes; seconds until each is in Kafka."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    await consumer.topics()
    parts = [TopicPartition("pec.raw", p) for p in consumer.partitions_for_topic("pec.raw") or []]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    sent: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}

    def append_all() -> None:
        for n in range(appends):
            index = 1 + (n * 7919) % mailboxes  # spread over the mailboxes
            raw = message(f"lat-{n}", body_bytes=2000)
            sent[message_id(raw) or b""] = time.monotonic()
            server.append(server.user(index), "INBOX", raw)
            time.sleep(1.0 / rate)

    thread = threading.Thread(target=append_all, daemon=True)
    thread.start()
    deadline = time.monotonic() + appends / rate + 60
    while len(seen) < appends and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        now = time.monotonic()
        for records in batch.values():
            for record in records:
                seen.setdefault(message_id(record.value) or b"", now)
    await consumer.stop()
    thread.join()
    return sorted(seen[k] - sent[k] for k in sent if k in seen)


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def run(args: argparse.Namespace) -> None:
    raise_inotify_limit(max(4096, args.mailboxes * 2))
    work = Path(tempfile.mkdtemp(prefix="pectrack-bench-"))
    with Dovecot(users=args.mailboxes) as server, EmbeddedBroker() as broker:
        filled = time.monotonic()
        for index in range(1, args.mailboxes + 1):
            raws = [message(f"m{index}-{n}", body_bytes=args.size) for n in range(args.messages)]
            server.deliver(server.user(index), "INBOX", raws)
        print(f"filled {args.mailboxes} x {args.messages} in {time.monotonic() - filled:.1f}s")

        one_dir = work / "one"
        one_dir.mkdir()
        one = Agent(write_config(one_dir, broker, server, [1], folders=("INBOX",)), work / "a.log")
        one.wait_connected(1, 60)
        await wait_records(broker.bootstrap, args.messages, 60)
        time.sleep(2)
        baseline = rss_kib(one.proc.pid)
        one.stop()

        all_dir = work / "all"
        all_dir.mkdir()
        users = list(range(1, args.mailboxes + 1))
        config = write_config(
            all_dir, broker, server, users, folders=("INBOX", "Sent"), command_timeout=60
        )
        broker_cpu = cpu_seconds(broker.pid or 0)
        dovecot_cpu = tree_cpu_seconds(server.master_pid() or 0)
        started = time.monotonic()
        agent = Agent(config, work / "agent.log")
        try:
            await wait_records(broker.bootstrap, args.mailboxes * args.messages, 600)
            sync = time.monotonic() - started
            cpu = cpu_seconds(agent.proc.pid)
            broker_cpu = cpu_seconds(broker.pid or 0) - broker_cpu
            dovecot_cpu = tree_cpu_seconds(server.master_pid() or 0) - dovecot_cpu
            total = args.mailboxes * args.messages
            print(f"initial sync: {total} messages ({args.size} B bodies) from {args.mailboxes}"
                  f" mailboxes in {sync:.1f}s = {total / sync:.0f} msg/s"
                  f" (CPU: agent {cpu:.1f}s, broker {broker_cpu:.1f}s,"
                  f" Dovecot {dovecot_cpu:.1f}s)")  # fmt: skip
            agent.wait_connected(args.mailboxes, 120)
            time.sleep(3)  # all mailboxes back in IDLE
            rss = rss_kib(agent.proc.pid)
            per_box = (rss - baseline) / max(args.mailboxes - 1, 1)
            print(f"agent RSS: {rss / 1024:.1f} MiB with {args.mailboxes} idle mailboxes,"
                  f" {baseline / 1024:.1f} MiB with 1: {per_box:.1f} KiB per mailbox")  # fmt: skip
            delays = await measure_latency(
                server, broker.bootstrap, args.mailboxes, args.appends, args.rate
            )
            lost = args.appends - len(delays)
            print(f"APPEND -> Kafka over {args.mailboxes} IDLE mailboxes: n={len(delays)}"
                  f" p50={percentile(delays, 50) * 1000:.0f} ms"
                  f" p99={percentile(delays, 99) * 1000:.0f} ms"
                  f" max={delays[-1] * 1000:.0f} ms missing={lost}")  # fmt: skip
            errors = metric(agent.port, 'pec_imap_errors_total{kind="timeout"}')
            print(f"IMAP timeouts during the run: {errors:.0f}")
        finally:
            agent.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="per mailbox, initial sync")
    parser.add_argument("--size", type=int, default=18_000, help="body bytes per message")
    parser.add_argument("--appends", type=int, default=300, help="latency samples")
    parser.add_argument("--rate", type=float, default=20.0, help="appends per second")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: Dovecot needs to run mail as uid `mail`")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
