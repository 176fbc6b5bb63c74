"""aioimaplib's protocol with a flat, copy-free reader of server responses.

aioimaplib 2.0.3 reads what the server sends by recursion, one frame per line or literal:
every step ``partition``-s the rest of the received chunk (a copy of up to 256 KB per
line), formats the whole chunk for a debug log line even when debug is off
(``'Received : %s' % d``: the repr of every byte received) and, past ~1,000 lines in one
chunk, raises ``RecursionError``. On a first sync of 18 KB messages that was most of the
agent's CPU per message (bench/README.md, "Agent CPU per fetched message").

:class:`FastProtocol` keeps aioimaplib's commands, states and response objects (a list of
lines, each literal a ``bytearray`` of its own, exactly as before) and replaces only the
reader: one loop over the chunk with an offset, literals copied once into their
command's buffer, no logging of the data; a FETCH's "is the item complete" check looks
back to the item's first line only (aioimaplib rescans the whole answer at every line);
a command's timeout moves a deadline at each line instead of re-arming a loop timer
(patched into aioimaplib's ``Command``, for this process). Memory stays bounded as
before: a literal is held only until its command completes, and the agent asks only for
batches it bounded by RFC822.SIZE (:mod:`agents.fetch_batches`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import (
    AUTH,
    NONAUTH,
    AllowedVersions,
    Command,
    Error,
    FetchCommand,
    IMAP4ClientProtocol,
    change_state,
    literal_data_re,
)

__all__ = ["FastIMAP4", "FastProtocol", "greeting_capabilities"]

_CRLF = b"\r\n"
_GREETING_CAPABILITY = re.compile(rb"^\* (?:OK|PREAUTH) \[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_FETCH_DATA = FetchCommand.FETCH_MESSAGE_DATA_RE


def _fetch_waits(cmd: Any) -> bool:
    """``FetchCommand.wait_data`` without its rescan of every line so far (quadratic in
    the answer's lines): the last ``n FETCH (`` line is looked for from the end."""
    lines = cmd._resp_lines
    start = 0
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if isinstance(line, bytes) and _FETCH_DATA.match(line):
            start = index
            break
    text = b"".join(line for line in lines[start:] if isinstance(line, bytes))
    return text.count(b"(") != text.count(b")")


def _waits(cmd: Any) -> bool:
    return _fetch_waits(cmd) if type(cmd) is FetchCommand else bool(cmd.wait_data())


def _reset_timer(self: Any) -> None:
    """A command's timeout restarts at every line it receives: move a deadline instead
    of cancelling and re-creating the loop's timer each time (~7% of a first sync)."""
    if self._timeout is not None:
        self._deadline = self._loop.time() + self._timeout


_original_timeout_callback = Command._timeout_callback


def _timeout_callback(self: Any) -> None:
    remaining = getattr(self, "_deadline", 0.0) - self._loop.time()
    if remaining > 0:
        self._timer = self._loop.call_later(remaining, self._timeout_callback)
    else:
        _original_timeout_callback(self)


# Every aioimaplib command of this process (only the agent imports this module).
Command._reset_timer = _reset_timer
Command._timeout_callback = _timeout_callback


def greeting_capabilities(greeting: bytes) -> list[str] | None:
    """The capabilities a server lists in its greeting (``* OK [CAPABILITY IMAP4rev1 ...]
    ready``, RFC 3501 7.1), or ``None`` when it lists none, or no version aioimaplib
    accepts (IMAP4rev1, IMAP4): then CAPABILITY is asked as before."""
    match = _GREETING_CAPABILITY.match(greeting)
    if match is None:
        return None
    names = match.group(1).decode("ascii", "replace").split()
    return names if any(name.upper() in AllowedVersions for name in names) else None


class FastProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """:class:`aioimaplib.IMAP4ClientProtocol` with an iterative response reader, and
    the capabilities of the greeting taken as they are (no CAPABILITY command) when the
    server lists them there, as Dovecot and most servers do."""

    @change_state  # type: ignore[untyped-decorator]
    async def welcome(self, command: bytes) -> None:
        """aioimaplib's ``welcome`` without the CAPABILITY round trip when the greeting
        already answers it; a greeting without them is followed by CAPABILITY as before.
        LOGIN's ``OK [CAPABILITY ...]`` is added after login by aioimaplib, as before."""
        if b"PREAUTH" in command:
            self.state = AUTH
        elif b"OK" in command:
            self.state = NONAUTH
        else:
            raise Error(command.decode(errors="replace"))
        names = greeting_capabilities(command)
        if names is None:
            await self.capability()
            return
        self.capabilities = set(names)
        self.imap_version = next(n.upper() for n in reversed(names) if n.upper() in AllowedVersions)

    def data_received(self, d: bytes) -> None:
        # current_command: the command whose line or literal the last chunk cut short
        pending: bytes = self.incomplete_line  # type: ignore[has-type]
        data = pending + d if pending else d
        cmd: Any = self.current_command  # type: ignore[has-type]
        self.incomplete_line = b""
        self.current_command = None
        self._read(data, cmd)

    def _read(self, data: bytes, cmd: Any) -> None:
        """The loop form of aioimaplib's ``_handle_responses`` (same decisions)."""
        pos, end = 0, len(data)
        view = memoryview(data)
        handle_line = self._handle_line
        while True:
            if cmd is not None and cmd._expected_size and cmd.wait_literal_data():
                buffer = cmd._resp_literal_data
                take = min(cmd._expected_size - len(buffer), end - pos)
                if take:
                    buffer += view[pos : pos + take]
                    pos += take
                if len(buffer) == cmd._expected_size:
                    cmd.append_to_resp(buffer)
                    cmd._end_literal_data()
                else:
                    cmd._reset_timer()
                    self.current_command = cmd
                    return
            if pos >= end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if cmd is not None and _waits(cmd):
                    self.current_command = cmd
                return
            stop = data.find(_CRLF, pos)
            if stop < 0:
                self.incomplete_line = data[pos:]
                self.current_command = cmd
                return
            line = data[pos:stop]
            pos = stop + 2
            found = handle_line(line, cmd)
            literal = literal_data_re.match(line) if line.endswith(b"}") else None
            if literal is not None:
                if found is None:
                    found = Command("NIL", "unused")
                found.begin_literal_data(int(literal.group("size")))
                cmd = found
            elif found is not None and _waits(found):
                cmd = found
            else:
                cmd = None


class FastIMAP4(aioimaplib.IMAP4):  # type: ignore[misc]
    """:class:`aioimaplib.IMAP4` on :class:`FastProtocol`."""

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[BaseException | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = FastProtocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )
