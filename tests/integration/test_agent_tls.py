"""TLS: certificate verification is on by default; opting out is explicit per mailbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pipeline.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot
from tests.support.kafka import wait_for_count
from tests.support.mail import message

from .conftest import in_process_agent, write_config

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
            while agent.metric("pectrack_imap_errors_total", {"kind": "tls"}) < 1:
                assert time.monotonic() < deadline, "no TLS error counted"
                await asyncio.sleep(0.1)
            assert agent.metric("pectrack_imap_mailbox_up", {"mailbox": "box-0001"}) == 0
    assert sorted(r.key.decode() for r in records) == ["box-0002", "box-0003"]
