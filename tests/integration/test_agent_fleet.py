"""One agent fleet on real servers: secrets read per mailbox at login (templated path,
missing or refused = that mailbox down, rotation picked up), ``--shard auto`` from a pod
name, and live reconfiguration by SIGHUP (200 mailboxes on Dovecot)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.fleet import resolve_shard
from agents.publish import read_cursors
from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.mail import message

from .conftest import AgentProcess, box, in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration


def fleet_config(
    directory: Path, broker: EmbeddedBroker, server: Dovecot, users: list[int]
) -> Path:
    """One ``password_file = "secrets/{id}"`` line for every mailbox; no secret written."""
    lines = [
        "[kafka]", f'bootstrap = "{broker.bootstrap}"', "idempotence = false", "partitions = 3",
        "[limits]", "command_timeout = 10", "backoff_base = 0.2", "backoff_cap = 1",
        "[mailbox_defaults]", f'host = "{server.host}"', f"port = {server.port}",
        'tls = "plain"', 'folders = ["INBOX", "Sent"]', 'password_file = "secrets/{id}"',
    ]  # fmt: skip
    for index in users:
        lines += ["[[mailbox]]", f'id = "{box(index)}"', f'user = "{server.user(index)}"']
    (directory / "secrets").mkdir(exist_ok=True)
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_missing_or_refused_secret_downs_that_mailbox_and_rotation_heals_it(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """Templated password files: one present, one missing, one wrong. The first flows;
    the other two are down (credentials metric 0, by kind) while the process runs on;
    writing the missing file and rotating the wrong one brings both up, no restart."""
    ok, missing, wrong = fresh_users(3)
    config = fleet_config(tmp_path, broker, dovecot, [ok, missing, wrong])
    secrets = tmp_path / "secrets"
    (secrets / box(ok)).write_text(dovecot.password(ok) + "\n")
    (secrets / box(wrong)).write_text("not-the-password")
    for index in (ok, missing, wrong):
        await asyncio.to_thread(dovecot.append, dovecot.user(index), "INBOX", message(f"m{index}"))
    async with in_process_agent(config) as agent:

        def credentials(index: int) -> float | None:
            labels = {"mailbox": box(index)}
            return agent.registry.get_sample_value("pec_imap_mailbox_credentials_ok", labels)

        await wait_until(
            lambda: credentials(missing) == 0 and credentials(wrong) == 0 and credentials(ok) == 1,
            20,
            "the two bad mailboxes to be down and the good one up",
        )
        (first,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=15)
        assert first.key == box(ok).encode()
        assert agent.metric("pec_imap_errors_total", {"kind": "secret"}) >= 1
        assert agent.metric("pec_imap_errors_total", {"kind": "auth"}) >= 1
        assert agent.metric("pec_imap_mailbox_up", {"mailbox": box(missing)}) == 0
        assert agent.task is not None
        assert not agent.task.done()  # the process runs on
        assert "not-the-password" not in agent.metrics_text()

        (secrets / box(missing)).write_text(dovecot.password(missing))
        (secrets / box(wrong)).write_text(dovecot.password(wrong))  # rotated
        await wait_until(
            lambda: credentials(missing) == 1 and credentials(wrong) == 1, 20, "both to log in"
        )
        records = await wait_for_count(broker.bootstrap, "pec.raw", 3, timeout=15)
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in (ok, missing, wrong))


async def test_shard_auto_reads_only_its_own_secrets(
    dovecot: Dovecot,
    broker: EmbeddedBroker,
    fresh_users: Any,
    tmp_path: Path,
    *,
    agent_processes: list[AgentProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pod ``pectrack-agent-1`` of 2 (``PECTRACK_SHARD=auto``) ingests exactly its share,
    with only its share's password files mounted, and no secret error at all."""
    users = fresh_users(8)
    config = fleet_config(tmp_path, broker, dovecot, users)
    env = {"HOSTNAME": "pectrack-agent-1", "PECTRACK_SHARD_COUNT": "2"}
    shard = resolve_shard("auto", env)
    mine = [i for i in users if shard.owns(box(i))]
    assert 0 < len(mine) < len(users)  # both shards own some of these ids
    for index in mine:
        (tmp_path / "secrets" / box(index)).write_text(dovecot.password(index))
    for index in users:
        await asyncio.to_thread(dovecot.append, dovecot.user(index), "INBOX", message(f"s{index}"))
    for name, value in {**env, "PECTRACK_SHARD": "auto"}.items():
        monkeypatch.setenv(name, value)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    agent_processes.append(agent)
    records = await wait_for_count(broker.bootstrap, "pec.raw", len(mine), timeout=30)
    await wait_until(lambda: "agent.start" in (tmp_path / "agent.log").read_text(), 10, "start")
    assert agent.terminate() == 0
    assert sorted(r.key.decode() for r in records) == sorted(box(i) for i in mine)
    events = [orjson.loads(line) for line in (tmp_path / "agent.log").read_text().splitlines()]
    (start,) = [e for e in events if e["event"] == "agent.start"]
    assert start["shard"] == "2/2"
    assert start["mailboxes"] == len(mine)
    assert not [e for e in events if e["event"] == "mailbox.error"]


_LOGIN = re.compile(r"imap-login: Info: Login: user=<(user\d{4})>")


def logins(server: Dovecot) -> Counter[str]:
    """Successful IMAP logins per user, from Dovecot's own log."""
    return Counter(_LOGIN.findall(server.log_text()))


def agent_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_sighup_applies_added_removed_and_changed_mailboxes_live(
    broker: EmbeddedBroker, tmp_path: Path, agent_processes: list[AgentProcess]
) -> None:
    """200 mailboxes; the new config removes 10, adds 10 and changes 1. After SIGHUP the
    added ones log in, the changed one logs in once more, the removed ones log out, and
    the other 189 keep their sessions (no new login in Dovecot's log). Mail delivered
    after the reload arrives exactly once from every configured mailbox and never from a
    removed one, whose cursors stay. An invalid config is then refused, the agent runs on."""
    with Dovecot(users=210) as server:
        first, later = list(range(1, 201)), list(range(11, 211))
        removed, added, changed = list(range(1, 11)), list(range(201, 211)), 100
        for index in first:
            server.deliver(server.user(index), "INBOX", [message(f"before-{index}")])
        config = write_config(tmp_path, broker, server, first, poll_seconds=5)
        log = tmp_path / "agent.log"
        agent = AgentProcess(config, log).start()
        agent_processes.append(agent)
        await wait_for_count(broker.bootstrap, "pec.raw", 200, timeout=120)
        await wait_until(lambda: len(logins(server)) == 200, 30, "200 logins")
        before = logins(server)

        write_config(tmp_path, broker, server, later, poll_seconds=5,
                     extra={changed: ['folders = ["INBOX"]']})  # fmt: skip
        assert agent.proc is not None
        agent.proc.send_signal(1)  # SIGHUP
        await wait_until(
            lambda: any(e["event"] == "config.reloaded" for e in agent_events(log)), 30, "reload"
        )
        await wait_until(
            lambda: (
                all(logins(server)[server.user(i)] == 1 for i in added)
                and logins(server)[server.user(changed)] == 2
            ),
            30,
            "the added and the changed mailboxes to log in",
        )
        for index in range(1, 211):
            server.deliver(server.user(index), "INBOX", [message(f"after-{index}")])
        records = await wait_for_count(broker.bootstrap, "pec.raw", 400, timeout=120)

        after = logins(server)
        kept = [i for i in first if i not in removed and i != changed]
        assert len(kept) == 189
        relogged = [i for i in kept if after[server.user(i)] != before[server.user(i)]]
        assert relogged == []  # the 189 kept their IMAP sessions through the reload
        await wait_until(
            lambda: all(not server.imap_pids(server.user(i)) for i in removed),
            15,
            "the removed mailboxes' IMAP sessions to end",
        )
        (reloaded,) = [e for e in agent_events(log) if e["event"] == "config.reloaded"]
        assert reloaded["added"]["count"] == 10
        assert reloaded["removed"]["count"] == 10
        assert reloaded["changed"]["ids"] == [box(changed)]
        assert reloaded["kept"] == 189

        got = Counter((r.key.decode(), r.value) for r in records)
        expected = Counter(
            [(box(i), message(f"before-{i}")) for i in first]
            + [(box(i), message(f"after-{i}")) for i in later]
        )
        assert got == expected  # nothing lost, nothing doubled, nothing from a removed one
        cursors = await read_cursors(broker.bootstrap, "pec.agent.cursors")
        assert all(f"{box(i)}/INBOX".encode() in cursors for i in removed)

        config.write_text(
            config.read_text() + '[[mailbox]]\nid = "x"\npassword = "hunter2-literal"\n'
        )
        agent.proc.send_signal(1)
        await wait_until(
            lambda: any(e["event"] == "config.reload_refused" for e in agent_events(log)),
            30,
            "the refusal",
        )
        (refused,) = [e for e in agent_events(log) if e["event"] == "config.reload_refused"]
        assert "no literal password" in refused["error"]
        assert "hunter2-literal" not in log.read_text()
        server.deliver(server.user(50), "INBOX", [message("after-refusal")])
        await wait_for_count(broker.bootstrap, "pec.raw", 401, timeout=30)
        assert logins(server) == after
        assert agent.terminate() == 0
