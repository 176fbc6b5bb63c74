"""Fewer IMAP round trips per mailbox, against real Dovecot and scripted servers.

The capabilities of the greeting stand for a CAPABILITY command (asked only when the
greeting lists none), and a folder's UIDs come with their sizes from one
``UID FETCH n:* (UID RFC822.SIZE)`` (``None`` when the server refuses it: the worker then
searches, tests/agents/test_agents_worker.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aioimaplib.aioimaplib import IMAP4ClientProtocol

from agents.config import MailboxConfig, parse_config
from agents.imap.protocol import greeting_capabilities
from agents.imap.session import ImapDroppedError, ImapSession
from tests.support.dovecot import Dovecot
from tests.support.mail import message

pytestmark = pytest.mark.integration


def mailbox(tmp_path: Path, host: str, port: int, user: str, password: str) -> MailboxConfig:
    secret = tmp_path / "secret"
    secret.write_text(password)
    config = parse_config(
        {
            "kafka": {"bootstrap": "127.0.0.1:1"},
            "mailbox": [
                {
                    "id": "rt",
                    "host": host,
                    "port": port,
                    "tls": "plain",
                    "user": user,
                    "password_file": str(secret),
                }
            ],
        },
        {},
    )
    return config.mailboxes[0]


@pytest.fixture
def sent_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every IMAP command the client sends (``LOGIN``, ``UID FETCH``...)."""
    names: list[str] = []
    original = IMAP4ClientProtocol.send

    def send(self: Any, line: str, scrub: str | None = None) -> None:
        words = line.split()
        names.append(" ".join(words[1:3]) if words[1:2] == ["UID"] else " ".join(words[1:2]))
        original(self, line, scrub=scrub)

    monkeypatch.setattr(IMAP4ClientProtocol, "send", send)
    return names


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[int]:
    """A one-connection-at-a-time IMAP server on a free port, run by ``script``."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await script(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()


async def answer_commands(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: dict[str, bytes]
) -> None:
    """Answer each command by its name: ``answers[name]`` (untagged lines, ``{tag}``
    replaced) then the tagged status the entry ends with."""
    while line := await reader.readline():
        tag, _, rest = line.decode().partition(" ")
        words = rest.split()
        name = " ".join(words[:2]) if words[:1] == ["UID"] else words[0]
        writer.write(answers.get(name, b"{tag} BAD unknown\r\n").replace(b"{tag}", tag.encode()))
        await writer.drain()


def test_greeting_capabilities_are_read_only_when_listed_with_a_version() -> None:
    """Dovecot's greeting form, a greeting without a list, one without IMAP4rev1."""
    dovecot = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE] Dovecot ready."
    assert greeting_capabilities(dovecot) == [
        "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE",
    ]  # fmt: skip
    assert greeting_capabilities(b"* PREAUTH [CAPABILITY IMAP4REV1 IDLE] hi") == [
        "IMAP4REV1",
        "IDLE",
    ]
    assert greeting_capabilities(b"* OK IMAP4rev1 server ready") is None
    assert greeting_capabilities(b"* OK [CAPABILITY IDLE] no version") is None
    assert greeting_capabilities(b"* OK [ALERT] [CAPABILITY IMAP4rev1]") is None


async def test_dovecot_login_sends_no_capability_command(
    dovecot: Dovecot, fresh_users: Any, tmp_path: Path, sent_commands: list[str]
) -> None:
    """Dovecot lists its capabilities in the greeting: LOGIN is the first command, and
    IDLE (needed for the watch) is known."""
    (index,) = fresh_users(1)
    user, password = dovecot.user(index), dovecot.password(index)
    box = mailbox(tmp_path, dovecot.host, dovecot.port, user, password)
    session = await ImapSession.open(box, 10)
    try:
        assert session.supports_idle
        await session.select("INBOX")
    finally:
        await session.close()
    assert sent_commands[:2] == ["LOGIN", "EXAMINE"]
    assert "CAPABILITY" not in sent_commands


async def test_greeting_without_capabilities_asks_for_them(
    tmp_path: Path, sent_commands: list[str]
) -> None:
    """A server whose greeting lists nothing: CAPABILITY is asked before LOGIN, as before."""
    answers = {
        "CAPABILITY": b"* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n",
        "LOGIN": b"{tag} OK logged in\r\n",
        "LOGOUT": b"* BYE\r\n{tag} OK bye\r\n",
    }

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK server ready\r\n")
        await answer_commands(reader, writer, answers)

    async with scripted_server(script) as port:
        session = await ImapSession.open(mailbox(tmp_path, "127.0.0.1", port, "u", "pw"), 5)
        try:
            assert session.supports_idle
        finally:
            await session.close()
    assert sent_commands[:2] == ["CAPABILITY", "LOGIN"]


async def test_dovecot_size_listing_matches_the_messages(
    dovecot: Dovecot, fresh_users: Any, tmp_path: Path
) -> None:
    """``sizes_from``: every UID from the first asked with its RFC822.SIZE (the raw
    length); past the newest UID, nothing (not the newest message ``n:*`` matches)."""
    (index,) = fresh_users(1)
    user = dovecot.user(index)
    raws = [message(f"listing-{index}-{n}", body_bytes=100 * (n + 1)) for n in range(3)]
    uids = dovecot.append_many(user, "INBOX", raws)
    box = mailbox(tmp_path, dovecot.host, dovecot.port, user, dovecot.password(index))
    session = await ImapSession.open(box, 10)
    try:
        await session.select("INBOX")
        everything = await session.sizes_from(1)
        later = await session.sizes_from(uids[1])
        beyond = await session.sizes_from(uids[-1] + 1)
        searched = await session.search_from(1)
    finally:
        await session.close()
    assert everything == [(uid, len(raw)) for uid, raw in zip(uids, raws, strict=True)]
    assert later == everything[1:]
    assert beyond == []
    assert [uid for uid, _ in everything] == searched


async def test_size_listing_refused_answers_none_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    """A server answering BAD to ``UID FETCH n:*``: ``None``, and the next command (the
    SEARCH the worker falls back to) is answered on the same connection."""
    answers = {
        "LOGIN": b"{tag} OK logged in\r\n",
        "EXAMINE": b"* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 9] ok\r\n"
        b"{tag} OK [READ-ONLY] done\r\n",
        "UID FETCH": b"{tag} BAD not supported here\r\n",
        "UID SEARCH": b"* SEARCH 3 8\r\n{tag} OK done\r\n",
        "LOGOUT": b"* BYE\r\n{tag} OK bye\r\n",
    }

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await answer_commands(reader, writer, answers)

    async with scripted_server(script) as port:
        session = await ImapSession.open(mailbox(tmp_path, "127.0.0.1", port, "u", "pw"), 5)
        try:
            status = await session.select("INBOX")
            listed = await session.sizes_from(1)
            searched = await session.search_from(1)
        finally:
            await session.close()
    assert (status.uidvalidity, status.uidnext, status.exists) == (7, 9, 2)
    assert listed is None
    assert searched == [3, 8]


async def test_command_after_the_server_hung_up_fails_at_once(tmp_path: Path) -> None:
    """Per-folder commands are awaited directly (no racing task): one issued after the
    server closed the connection is refused at once as a drop, not left to its 30 s
    command timeout."""
    closed = asyncio.Event()
    answers = {"LOGIN": b"{tag} OK logged in\r\n"}

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
        line = await reader.readline()  # LOGIN
        writer.write(answers["LOGIN"].replace(b"{tag}", line.split()[0]))
        await writer.drain()
        writer.transport.abort()
        closed.set()

    async with scripted_server(script) as port:
        session = await ImapSession.open(mailbox(tmp_path, "127.0.0.1", port, "u", "pw"), 30)
        try:
            await closed.wait()
            await asyncio.sleep(0.2)  # the client sees the connection end
            with pytest.raises(ImapDroppedError):
                await asyncio.wait_for(session.select("INBOX"), 5)
            with pytest.raises(ImapDroppedError):
                await asyncio.wait_for(session.sizes_from(1), 5)
        finally:
            await session.close()
