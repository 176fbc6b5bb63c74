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
command's buffer, no logging of the data. Memory stays bounded as before: a literal is
held only until its command completes, and the agent asks only for batches it bounded
by RFC822.SIZE (:mod:`agents.fetch_batches`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import Command, IMAP4ClientProtocol, literal_data_re

__all__ = ["FastIMAP4", "FastProtocol"]

_CRLF = b"\r\n"


class FastProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """:class:`aioimaplib.IMAP4ClientProtocol` with an iterative response reader."""

    def data_received(self, d: bytes) -> None:
        # current_command: the command whose line or literal the last chunk cut short
        data = self.incomplete_line + d if self.incomplete_line else d
        cmd: Any = self.current_command
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
                if cmd is not None and cmd.wait_data():
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
            elif found is not None and found.wait_data():
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
