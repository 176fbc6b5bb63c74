"""TLS: certificate verification is on by default; opting out is explicit per mailbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.mail import message

from .conftest import in_process_agent, wait_until, write_config

pytestmark = pytest.mark.integration


async def test_untrusted_certificate_is_refused_unless_opted_out_or_trusted(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Self-signed server: default mailbox fails with kind=tls; opt-out and ca_file flow."""
    with Dovecot(users=3, tls=True) as server:
        for index in (1, 2, 3):
            server.append(server.user(index), "INBOX", message(f"tls-{index}"))
        extra = {2: ["verify_tls = false"], 3: [f'ca_file = "{server.cert_path}"']}
        config = write_config(tmp_path, broker, server, [1, 2, 3], tls="tls", extra=extra)
        async with in_process_agent(config) as agent:
            records = await wait_for_count(broker.bootstrap, "pec.raw", 2, timeout=20)
            deadline = time.monotonic() + 10
            while agent.metric("pec_imap_errors_total", {"kind": "tls"}) < 1:
                assert time.monotonic() < deadline, "no TLS error counted"
                await asyncio.sleep(0.1)
            assert agent.metric("pec_imap_mailbox_up", {"mailbox": "box-0001"}) == 0
    assert sorted(r.key.decode() for r in records) == ["box-0002", "box-0003"]


async def test_starttls_upgrades_before_login_and_verifies_the_certificate(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """tls = "starttls": with the CA trusted mail flows; with default trust it is refused."""
    with Dovecot(users=2, starttls=True) as server:
        for index in (1, 2):
            server.append(server.user(index), "INBOX", message(f"starttls-{index}"))
        extra = {2: [f'ca_file = "{server.cert_path}"']}
        config = write_config(tmp_path, broker, server, [1, 2], tls="starttls", extra=extra)
        async with in_process_agent(config) as agent:
            (record,) = await wait_for_count(broker.bootstrap, "pec.raw", 1, timeout=20)
            deadline = time.monotonic() + 10
            while agent.metric("pec_imap_errors_total", {"kind": "tls"}) < 1:
                assert time.monotonic() < deadline, "no TLS error counted"
                await asyncio.sleep(0.1)
            # up = every folder synced; the INBOX record can reach Kafka before Sent is done
            await wait_until(
                lambda: agent.metric("pec_imap_mailbox_up", {"mailbox": "box-0002"}) == 1,
                10,
                "box-0002 up",
            )
            assert agent.metric("pec_imap_mailbox_up", {"mailbox": "box-0001"}) == 0
    assert record.key == b"box-0002"


async def test_starttls_mailbox_never_logs_in_in_clear_text(
    dovecot: Dovecot, broker: EmbeddedBroker, fresh_users: Any, tmp_path: Path
) -> None:
    """A server that offers no STARTTLS is a TLS failure, not a plain-text login."""
    (index,) = fresh_users(1)
    config = write_config(tmp_path, broker, dovecot, [index], tls="starttls")
    async with in_process_agent(config) as agent:
        deadline = time.monotonic() + 10
        while agent.metric("pec_imap_errors_total", {"kind": "tls"}) < 1:
            assert time.monotonic() < deadline, "no TLS error counted"
            await asyncio.sleep(0.1)
        assert agent.metric("pec_imap_errors_total", {"kind": "auth"}) == 0
    assert f"user=<{dovecot.user(index)}>" not in dovecot.log_text()
