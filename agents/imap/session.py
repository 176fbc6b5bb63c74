"""One IMAP connection through aioimaplib, with its errors translated once, here.

Error tree (``kind`` is the metric label)::

    ImapError
    ├── ImapAuthError        kind="auth"      LOGIN refused
    │   └── ImapSecretError  kind="secret"    the password cannot be read (agents.secrets)
    ├── ImapTlsError         kind="tls"       handshake or certificate verification failed
    ├── ImapConnectError     kind="connect"   refused, unreachable, DNS
    ├── ImapTimeoutError          kind="timeout"   a command exceeded the per-command timeout
    ├── ImapDroppedError          kind="dropped"   the server closed the connection
    ├── ImapParserError      kind="parser"    aioimaplib failed on a response (RecursionError)
    └── ImapProtocolError    kind="protocol"  NO/BAD or an answer the agent cannot use
        └── ImapFolderMissingError            a configured folder does not exist (LIST)

Messages name the mailbox id and the server's status, never the password. Every fetch is
``BODY.PEEK[]``: the agent never sets ``\\Seen`` or any other flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import date
from typing import Any, TypeVar

import aioimaplib

from agents.config import MailboxConfig, TlsMode
from agents.cursor import FolderStatus
from agents.fetch_batches import uid_set
from agents.history import imap_date
from agents.imap import parse
from agents.imap.protocol import FastIMAP4
from agents.records import FetchedMessage
from agents.secrets import SecretUnavailableError

__all__ = [
    "ImapAuthError",
    "ImapConnectError",
    "ImapDroppedError",
    "ImapError",
    "ImapFolderMissingError",
    "ImapParserError",
    "ImapProtocolError",
    "ImapSecretError",
    "ImapSession",
    "ImapTimeoutError",
    "ImapTlsError",
]

T = TypeVar("T")

# EXAMINE is SELECT read-only: the server then changes no flag at all, not even \Recent.
# aioimaplib declares it "async", which routes its untagged answers (UIDVALIDITY, UIDNEXT)
# nowhere; declared "sync" like SELECT, the answers are collected as for SELECT.
aioimaplib.aioimaplib.Commands["EXAMINE"] = aioimaplib.aioimaplib.Cmd(
    "EXAMINE",
    (aioimaplib.aioimaplib.AUTH, aioimaplib.aioimaplib.SELECTED),
    aioimaplib.aioimaplib.Exec.is_sync,
)


class ImapError(Exception):
    """An IMAP failure of one mailbox; the worker reconnects with backoff."""

    kind = "protocol"


class ImapAuthError(ImapError):
    kind = "auth"


class ImapSecretError(ImapAuthError):
    """No password to log in with: unset variable, missing/unreadable/empty file."""

    kind = "secret"


class ImapTlsError(ImapError):
    kind = "tls"


class ImapConnectError(ImapError):
    kind = "connect"


class ImapTimeoutError(ImapError):
    kind = "timeout"


class ImapDroppedError(ImapError):
    kind = "dropped"


class ImapParserError(ImapError):
    kind = "parser"


class ImapProtocolError(ImapError):
    kind = "protocol"


class ImapFolderMissingError(ImapProtocolError):
    """EXAMINE refused and LIST does not know the folder: a config or provider mistake."""


def ssl_context(box: MailboxConfig) -> ssl.SSLContext | None:
    """Verified TLS by default; ``verify_tls = false`` is an explicit per-mailbox opt-out."""
    if box.tls is TlsMode.PLAIN:
        return None
    context = ssl.create_default_context(cafile=str(box.ca_file) if box.ca_file else None)
    if not box.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ImapSession:
    """A logged-in connection to one mailbox; one command at a time."""

    def __init__(self, box: MailboxConfig, timeout: float) -> None:
        self.box = box
        self.timeout = timeout
        loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[BaseException | None] = loop.create_future()
        self._tls = ssl_context(box)
        self._client = FastIMAP4(
            host=box.host,
            port=box.port,
            timeout=timeout,
            conn_lost_cb=self._connection_lost,
            ssl_context=self._tls if box.tls is TlsMode.TLS else None,
        )
        self.selected: str | None = None

    @classmethod
    async def open(cls, box: MailboxConfig, timeout: float) -> ImapSession:
        """Connect and log in; raises an :class:`ImapError` subclass.

        The password is read first (each login: a rotated file is picked up); when it
        cannot be, no connection is made.
        """
        try:
            password = box.password.reveal()
        except SecretUnavailableError as exc:
            raise ImapSecretError(f"mailbox {box.id}: {exc}") from None
        session = cls(box, timeout)
        try:
            await session._call(session._client.wait_hello_from_server())
            if box.tls is TlsMode.STARTTLS:
                await session._call(asyncio.wait_for(session._starttls(), timeout))
            response = await session._call(session._client.login(box.user, password))
            if response.result != "OK":
                raise ImapAuthError(f"mailbox {box.id}: login refused ({response.result})")
        except BaseException:
            await session.close()
            raise
        return session

    async def _starttls(self) -> None:
        """Upgrade the plain connection before LOGIN; no STARTTLS offered is a TLS failure.

        aioimaplib has no STARTTLS helper: the command is sent, then asyncio's ``start_tls``
        swaps the transport under the same protocol, and capabilities are read again.
        """
        protocol = self._client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapTlsError(f"mailbox {self.box.id}: server does not offer STARTTLS")
        command = aioimaplib.aioimaplib.Command("STARTTLS", protocol.new_tag())
        response = await protocol.execute(command)
        if response.result != "OK":
            raise ImapTlsError(f"mailbox {self.box.id}: STARTTLS answered {response.result}")
        assert self._tls is not None
        loop = asyncio.get_running_loop()
        protocol.transport = await loop.start_tls(
            protocol.transport, protocol, self._tls, server_hostname=self.box.host
        )
        await protocol.capability()

    def _connection_lost(self, exc: BaseException | None) -> None:
        if not self._lost.done():
            self._lost.set_result(exc)
        # aioimaplib leaves in-flight commands waiting forever for a dead connection. One
        # sent under its state lock (CAPABILITY right after the greeting) then holds that
        # lock, and a cancelled waiter on it (the hello wait) never finishes: fail them all
        # the way aioimaplib fails a timed-out command (an exception, never a response).
        protocol = self._client.protocol
        for command in [protocol.pending_sync_command, *protocol.pending_async_commands.values()]:
            if command is not None:
                command._exception = ConnectionResetError("connection lost")
                command.close(b"", "BYE")
        # aioimaplib's own tasks (IDLE's, above all) now fail with that error, and may
        # never be awaited by the code that was waiting on this session: it is reported as
        # the lost connection, not as "Task exception was never retrieved".
        for task in list(self._client.tasks):
            task.add_done_callback(_retrieved)

    @property
    def supports_idle(self) -> bool:
        return "IDLE" in self._client.protocol.capabilities

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Await one aioimaplib call, failing fast if the connection drops meanwhile."""
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        waiting: set[asyncio.Future[Any]] = {task, self._lost}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
            raise self._lost_error()
        try:
            return task.result()
        except Exception as exc:  # translated by _error (unknown ones raised as they are)
            raise self._error(exc) from None

    async def _command(self, command: Coroutine[Any, Any, T]) -> T:
        """Await one IMAP command of a logged-in session, without :meth:`_call`'s task
        and wait per command (a first sync of 18 KB messages: ~15 tasks per mailbox).

        Only for an ``execute`` of a command with its own timeout, in a session that
        runs one command at a time: the command is registered as pending before the
        loop runs anything else, so a connection lost after this check closes it with
        an error (:meth:`_connection_lost`); one lost before is refused here. It never
        waits longer than :meth:`_call` would.
        """
        if self._lost.done():
            command.close()  # never started: nothing sent
            raise self._lost_error()
        try:
            return await command
        except Exception as exc:  # translated by _error (unknown ones raised as they are)
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> ImapError:
        """An aioimaplib or socket failure as the :class:`ImapError` its metric counts."""
        if isinstance(exc, ImapError):
            return exc
        if isinstance(exc, (TimeoutError, aioimaplib.CommandTimeout)):
            return ImapTimeoutError(f"mailbox {self.box.id}: command timed out")
        if isinstance(exc, ssl.SSLError):
            return ImapTlsError(f"mailbox {self.box.id}: TLS failure: {exc.reason}")
        if isinstance(exc, RecursionError):
            return ImapParserError(f"mailbox {self.box.id}: response too deep to parse")
        if isinstance(exc, OSError):
            if self._lost.done():
                return self._lost_error()
            return ImapConnectError(f"mailbox {self.box.id}: {exc.strerror or exc}")
        if isinstance(exc, aioimaplib.Abort):
            return ImapProtocolError(f"mailbox {self.box.id}: client state error")
        if isinstance(exc, aioimaplib.AioImapException):
            return ImapProtocolError(f"mailbox {self.box.id}: {type(exc).__name__}")
        raise exc

    def _lost_error(self) -> ImapError:
        exc = self._lost.result()
        if isinstance(exc, RecursionError):
            return ImapParserError(f"mailbox {self.box.id}: response too deep to parse")
        if isinstance(exc, ssl.SSLError):
            return ImapTlsError(f"mailbox {self.box.id}: TLS failure: {exc.reason}")
        return ImapDroppedError(f"mailbox {self.box.id}: connection closed by server")

    def _check(self, response: Any, what: str) -> Sequence[bytes | bytearray]:
        if response.result != "OK":
            raise ImapProtocolError(f"mailbox {self.box.id}: {what} answered {response.result}")
        lines: Sequence[bytes | bytearray] = response.lines
        return lines

    async def select(self, folder: str) -> FolderStatus:
        """EXAMINE the folder (read-only) and report its UIDVALIDITY/UIDNEXT/EXISTS."""
        response = await self._command(self._examine(folder))
        if response.result != "OK":
            self.selected = None  # a failed EXAMINE leaves no folder selected (RFC 3501)
            if not await self._listed(folder):
                raise ImapFolderMissingError(
                    f"mailbox {self.box.id}: folder {folder!r} does not exist on the server"
                )
            raise ImapProtocolError(
                f"mailbox {self.box.id}: EXAMINE {folder!r} answered {response.result}"
            )
        try:
            status = parse.folder_status(self._check(response, "SELECT"))
        except parse.ParseError as exc:
            raise ImapProtocolError(f"mailbox {self.box.id}: {exc}") from None
        self.selected = folder
        return status

    async def _examine(self, folder: str) -> Any:
        protocol = self._client.protocol
        command = aioimaplib.aioimaplib.Command(
            "EXAMINE", protocol.new_tag(), _quote(folder), timeout=self.timeout
        )
        async with protocol.state_condition:
            response = await protocol.execute(command)
            if response.result == "OK":
                protocol.state = aioimaplib.aioimaplib.SELECTED
            protocol.state_condition.notify_all()
        return response

    async def _uid_search(self, criteria: str) -> Any:
        """``UID SEARCH criteria`` with the command timeout (aioimaplib's ``uid_search``
        wraps it in ``wait_for``: a task and a timer more per search)."""
        protocol = self._client.protocol
        command = aioimaplib.aioimaplib.Command(
            "SEARCH", protocol.new_tag(), criteria, prefix="UID", timeout=self.timeout
        )
        return await protocol.execute(command)

    async def _listed(self, folder: str) -> bool:
        response = await self._call(self._client.list('""', _quote(folder)))
        return folder in parse.listed_folders(self._check(response, "LIST"))

    async def special_use(self) -> dict[str, str]:
        """``{"\\Sent": "Posta inviata", ...}``: folders by special-use attribute (LIST)."""
        response = await self._call(self._client.list('""', "*"))
        return parse.special_use_folders(self._check(response, "LIST"))

    async def search_from(self, first_uid: int) -> list[int]:
        """UIDs ``>= first_uid`` in the selected folder, ascending."""
        response = await self._command(self._uid_search(f"UID {first_uid}:*"))
        return parse.search_uids(self._check(response, "UID SEARCH"), first_uid)

    async def search_since(self, first_uid: int, since: date) -> list[int]:
        """UIDs ``>= first_uid`` whose INTERNALDATE is on or after ``since``, ascending."""
        criteria = f"UID {first_uid}:* SINCE {imap_date(since)}"
        response = await self._command(self._uid_search(criteria))
        return parse.search_uids(self._check(response, "UID SEARCH SINCE"), first_uid)

    async def sizes_from(self, first_uid: int) -> list[tuple[int, int]] | None:
        """``(uid, RFC822.SIZE)`` of every message with UID ``>= first_uid``, ascending:
        one ``UID FETCH first:* (UID RFC822.SIZE)`` in place of SEARCH and a size query.

        ``None`` when the server refuses it (NO/BAD: the connection stays usable); the
        caller then lists by SEARCH. ``n:*`` above the highest UID still matches the
        highest UID (RFC 3501 6.4.8), hence the filter.
        """
        what = "(UID RFC822.SIZE)"
        response = await self._command(self._client.uid("fetch", f"{first_uid}:*", what))
        if response.result != "OK":
            return None
        listed = dict(parse.sizes(response.lines))  # a UID answered twice counts once
        return sorted((uid, size) for uid, size in listed.items() if uid >= first_uid)

    async def sizes(self, uids: Sequence[int]) -> list[tuple[int, int]]:
        what = "(UID RFC822.SIZE)"
        response = await self._command(self._client.uid("fetch", uid_set(uids), what))
        return parse.sizes(self._check(response, "UID FETCH RFC822.SIZE"))

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        """Raw messages, ``BODY.PEEK[]`` so no flag changes."""
        what = "(UID INTERNALDATE BODY.PEEK[])"
        response = await self._command(self._client.uid("fetch", uid_set(uids), what))
        return parse.messages(self._check(response, "UID FETCH BODY.PEEK[]"))

    async def header_section(self, uid: int) -> bytes:
        """The header section of one message (for a dead-letter record)."""
        what = "(UID BODY.PEEK[HEADER])"
        response = await self._command(self._client.uid("fetch", str(uid), what))
        found = parse.messages(self._check(response, "UID FETCH BODY.PEEK[HEADER]"))
        return found[0].raw if found else b""

    async def wait_for_news(self, timeout: float, stop: asyncio.Event) -> bool:
        """IDLE on the selected folder until EXISTS (True), ``timeout`` or ``stop`` (False)."""
        client = self._client
        idle = await self._call(asyncio.wait_for(client.idle_start(timeout=timeout), self.timeout))
        stopping = asyncio.ensure_future(stop.wait())
        push: asyncio.Future[Any] | None = None
        news = False
        try:
            while not news:
                push = asyncio.ensure_future(client.wait_server_push(timeout + self.timeout))
                waiting: set[asyncio.Future[Any]] = {push, stopping, self._lost}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not push.done():
                    if self._lost.done():
                        raise self._lost_error()
                    break
                lines = await self._call(push)
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                news = any(isinstance(x, bytes) and x.endswith(b"EXISTS") for x in lines)
        finally:
            stopping.cancel()
            if push is not None:
                push.cancel()
        if not self._lost.done():
            client.idle_done()
        await self._call(asyncio.wait_for(idle, self.timeout))
        return news

    async def close(self) -> None:
        """Log out politely if possible; never raises."""
        client = self._client
        with contextlib.suppress(Exception):
            if not self._lost.done() and client.protocol.state in ("AUTH", "SELECTED"):
                await asyncio.wait_for(client.logout(), 2.0)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        else:
            client._client_task.cancel()


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a task's exception as seen: its failure is reported another way (the lost
    connection), not as asyncio's "Task exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _quote(folder: str) -> str:
    """Quote a folder name for SELECT (names like ``Posta inviata`` contain spaces)."""
    if folder.isalnum():
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
