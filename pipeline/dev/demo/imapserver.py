"""An embedded IMAP server for the demo: pymap's in-memory backend on a loopback port.

No root, no files: every mailbox lives in this process's memory and is gone when it
stops. Users are created up front; :meth:`DemoImapServer.deliver` stores a message the
way a provider's mail store would (an IMAP client idling on the folder is told at once)::

    server = DemoImapServer({"mario.rossi@pec.aruba.it": "pw"}, port=10143)
    async with server:
        await server.deliver("mario.rossi@pec.aruba.it", "INBOX", raw, when)

The server offers IDLE, UIDPLUS and stable UIDVALIDITY, LOGIN without TLS (loopback
only). pymap keeps every message parsed in memory (~3 MB a second at the demo's default
rate), so :meth:`DemoImapServer.prune` expunges what was delivered long enough ago for
the agent to have read it, as a user emptying the mailbox would.
Errors: :class:`ImapServerError` when pymap is not installed.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Self

__all__ = ["FOLDERS", "DemoImapServer", "ImapServerError"]

FOLDERS = ("INBOX", "Sent")

# pysasl's default is 500,000 PBKDF2 rounds (~0.3 s a login): hundreds of demo
# mailboxes log in at start-up, with throw-away passwords on loopback.
_DEMO_HASH_ROUNDS = 1


class ImapServerError(RuntimeError):
    """The embedded IMAP server cannot run (pymap missing, port taken)."""


class DemoImapServer:
    """pymap's dict backend serving ``users`` (address -> password) on ``host:port``."""

    def __init__(self, users: Mapping[str, str], *, port: int, host: str = "127.0.0.1") -> None:
        self.users = dict(users)
        self.host = host
        self.port = port
        self._stack: AsyncExitStack | None = None
        self._config: Any = None
        self._delivered: deque[tuple[float, str, str, int]] = deque()  # (at, user, folder, uid)

    async def start(self) -> Self:
        try:
            from pymap.backend.dict import Config, DictBackend, Login  # noqa: PLC0415
            from pymap.imap import IMAPService  # noqa: PLC0415
            from pymap.user import Passwords, UserMetadata  # noqa: PLC0415
            from pysasl.hashing import BuiltinHash  # noqa: PLC0415
        except ImportError as exc:
            raise ImapServerError(
                "the demo needs pymap: pip install -e '.[demo]' (or run `make demo`)"
            ) from exc
        args = argparse.Namespace(
            passlib_cfg=None, proxy_protocol=None, inherited_sockets=None, debug=False
        )
        config = Config(
            args,
            host=self.host,
            port=self.port,
            demo_data=False,
            demo_user="demo",
            demo_password="demo",  # noqa: S106 - pymap's built-in user, given no mail
            tls_enabled=False,
            invalid_user_sleep=0.0,
            reject_dnsbl=False,
            hash_context=BuiltinHash(rounds=_DEMO_HASH_ROUNDS),
            bad_command_limit=None,
        )
        config.apply_context()
        login = Login(config)
        backend = DictBackend(login, config)
        passwords = Passwords(config)
        for user, password in self.users.items():
            hashed = await passwords.hash_password(password)
            login.users_dict[user] = UserMetadata(config, user, password=hashed)
        self._config = config
        for user in self.users:
            await self._folders(user)
        stack = AsyncExitStack()
        try:
            await backend.start(stack)
            await IMAPService(backend, config).start(stack)
        except OSError as exc:
            await stack.aclose()
            raise ImapServerError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._stack = stack
        return self

    async def _folders(self, user: str) -> Any:
        """The user's mailbox set, created with INBOX and Sent on first use."""
        from pymap.backend.dict.filter import FilterSet  # noqa: PLC0415
        from pymap.backend.dict.mailbox import MailboxSet  # noqa: PLC0415

        cached = self._config.set_cache.get(user)
        if cached is not None:
            return cached[0]
        mailbox_set = MailboxSet()
        for folder in FOLDERS:
            if folder != "INBOX":
                await mailbox_set.add_mailbox(folder)
        self._config.set_cache[user] = (mailbox_set, FilterSet())
        return mailbox_set

    async def deliver(
        self, user: str, folder: str, raw: bytes, when: datetime, *, at: float = 0.0
    ) -> int:
        """Store ``raw`` in ``user``'s ``folder`` (INTERNALDATE ``when``) as new mail and
        return its UID; ``at`` (any clock) is what :meth:`prune` compares."""
        from pymap.parsing.message import AppendMessage  # noqa: PLC0415

        if self._config is None:
            raise ImapServerError("server not started")
        mailbox_set = await self._folders(user)
        mailbox = await mailbox_set.get_mailbox(folder)
        message = await mailbox.append(AppendMessage(raw, when), recent=True)
        uid: int = message.uid
        self._delivered.append((at, user, folder, uid))
        return uid

    async def prune(self, delivered_before: float) -> int:
        """Expunge every message delivered with ``at`` < ``delivered_before``; return how many."""
        doomed: dict[tuple[str, str], list[int]] = {}
        while self._delivered and self._delivered[0][0] < delivered_before:
            _at, user, folder, uid = self._delivered.popleft()
            doomed.setdefault((user, folder), []).append(uid)
        for (user, folder), uids in doomed.items():
            mailbox_set = await self._folders(user)
            mailbox = await mailbox_set.get_mailbox(folder)
            await mailbox.delete(uids)
        return sum(len(uids) for uids in doomed.values())

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
