"""A real Dovecot IMAP server for tests: N users with passwords, on a loopback port.

::

    with Dovecot(users=200) as server:
        server.append("user0001", "INBOX", raw_message)
        server.flags("user0001", "INBOX")        # {uid: flags}, via stdlib imaplib

Users are ``user0001``.. with password ``pw0001``..; every user has ``INBOX`` and ``Sent``.
Needs the Debian package ``dovecot-imapd``: :func:`require_dovecot` fails with the
command to run when it is missing (the suite never skips).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from pipeline.dev.embedded import free_port, wait_for_port
from pipeline.dev.procstat import processes

__all__ = ["Dovecot", "raise_inotify_limit", "require_dovecot"]

_MAIL_UID = 8  # Debian's "mail" user and group


def require_dovecot() -> str:
    """Path of the ``dovecot`` binary, or an assertion telling how to install it."""
    path = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    assert path, "Dovecot is missing: run `make system-deps` (as root) to install dovecot-imapd"
    return path


def raise_inotify_limit(instances: int = 4096) -> None:
    """Let every IDLE session get an inotify instance (else Dovecot polls every 30 s)."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        if int(knob.read_text()) < instances:
            knob.write_text(str(instances))
    except (OSError, ValueError):
        pass  # not root: Dovecot still works, push is just slower


def user_name(index: int) -> str:
    return f"user{index:04d}"


def password(index: int) -> str:
    return f"pw{index:04d}"


_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 8
mail_location = maildir:~/Maildir
mail_max_userip_connections = 5000
default_client_limit = 6000
default_process_limit = 3000
default_vsz_limit = 0
imap_idle_notify_interval = 2 mins
verbose_proctitle = yes
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    auto = create
    special_use = \\Sent
  }}
}}
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = 3000
}}
service imap {{
  process_limit = 3000
}}
service auth {{
  client_limit = 6000
}}
service anvil {{
  client_limit = 7000
}}
"""


class Dovecot:
    """One Dovecot instance in ``directory`` with ``users`` maildir users."""

    def __init__(
        self,
        *,
        users: int = 3,
        port: int | None = None,
        tls: bool = False,
        starttls: bool = False,
        extra_conf: str = "",
    ) -> None:
        """``tls=True``: implicit TLS on ``port`` with a self-signed cert (``cert_path``);
        ``starttls=True``: plain port where TLS is required through STARTTLS.

        ``extra_conf`` is appended to dovecot.conf, e.g. ``imap_capability = IMAP4rev1``
        for a server without IDLE.
        """
        # Its own directory, world-traversable: mail processes run as uid ``mail`` and
        # could not enter pytest's root-only tmp_path.
        self.dir = Path(tempfile.mkdtemp(prefix="pectrack-dovecot-"))
        self.dir.chmod(0o755)
        self.users = users
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._binary = require_dovecot()
        self._conf = self.dir / "dovecot.conf"
        self.tls = tls
        self.starttls = starttls
        self.cert_path = self.dir / "cert.pem"
        self.extra_conf = extra_conf
        self._master: subprocess.Popen[bytes] | None = None

    def user(self, index: int) -> str:
        return user_name(index)

    def password(self, index: int) -> str:
        return password(index)

    def maildir(self, user: str) -> Path:
        return self.dir / "mail" / user / "Maildir"

    def _write_config(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(1, self.users + 1):
            home = self.dir / "mail" / user_name(i)
            home.mkdir(exist_ok=True)
            os.chown(home, _MAIL_UID, _MAIL_UID)
            lines.append(f"{user_name(i)}:{{PLAIN}}{password(i)}:8:8::{home}::\n")
        (self.dir / "passwd").write_text("".join(lines))
        ssl_conf = "ssl = no"
        if self.tls or self.starttls:
            self._make_certificate()
            key = self.dir / "key.pem"
            ssl_conf = f"ssl = required\nssl_cert = <{self.cert_path}\nssl_key = <{key}"
        ports = (
            {"imap_port": 0, "imaps_port": self.port}
            if self.tls
            else {"imap_port": self.port, "imaps_port": 0}
        )
        text = _CONF.format(d=self.dir, ssl=ssl_conf, **ports) + self.extra_conf + "\n"
        self._conf.write_text(text)

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 (a CA no system trusts)."""
        if self.cert_path.exists():
            return
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=pectrack test IMAP", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.dir / "key.pem"), "-out", str(self.cert_path)],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> Self:
        raise_inotify_limit()
        self._write_config()
        # Foreground (-F) as our child in a session of its own: we reap the master (no
        # zombie) and can end every Dovecot process by session id.
        self._master = subprocess.Popen(
            [self._binary, "-F", "-c", str(self._conf)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.host, self.port, 10, self._master)
        return self

    def master_pid(self) -> int | None:
        return self._master.pid if self._master is not None else None

    def stop(self) -> None:
        """Stop the master and every child (connections drop); safe to call twice."""
        master, self._master = self._master, None
        if master is None:
            return
        master.terminate()
        try:
            master.wait(10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        # Children outlive the master for seconds (IDLE sessions ~9 s): end the whole
        # session, so connections drop now and nothing leaks.
        for child in _session_members(master.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kick(self, user: str) -> None:
        """Drop every IMAP connection of ``user`` (the server hangs up on the client)."""
        subprocess.run(
            ["doveadm", "-c", str(self._conf), "kick", user], check=True, capture_output=True
        )

    def imap_pids(self, user: str) -> list[int]:
        """Pids of the ``imap`` processes serving ``user`` (titles like ``[user0001 ...]``)."""
        assert self._master is not None
        pids = []
        for pid in _session_members(self._master.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if title.startswith(b"dovecot/imap ") and f"[{user} ".encode() in title:
                pids.append(pid)
        return pids

    def log_text(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- client side helpers (stdlib imaplib, deliberately not the code under test) --

    def connect(self, user: str) -> imaplib.IMAP4:
        index = int(user.removeprefix("user"))
        client: imaplib.IMAP4
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.cert_path))
            client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=30)
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=30)
            if self.starttls:
                client.starttls(ssl.create_default_context(cafile=str(self.cert_path)))
        client.login(user, password(index))
        return client

    def append(self, user: str, folder: str, raw: bytes, flags: str = "") -> int:
        """APPEND one message; returns its UID (UIDPLUS ``APPENDUID``)."""
        client = self.connect(user)
        try:
            typ, data = client.append(folder, flags or None, None, raw)
            assert typ == "OK", data
            text = data[0].decode() if data and isinstance(data[0], bytes) else ""
            return int(text.split("APPENDUID ")[1].split()[1].rstrip("]"))
        finally:
            client.logout()

    def append_at(self, user: str, folder: str, raw: bytes, when: datetime) -> int:
        """APPEND one message with an explicit INTERNALDATE (old mail); returns its UID."""
        client = self.connect(user)
        try:
            typ, data = client.append(folder, None, imaplib.Time2Internaldate(when), raw)
            assert typ == "OK", data
            text = data[0].decode() if data and isinstance(data[0], bytes) else ""
            return int(text.split("APPENDUID ")[1].split()[1].rstrip("]"))
        finally:
            client.logout()

    def append_many(self, user: str, folder: str, raws: list[bytes]) -> list[int]:
        client = self.connect(user)
        uids = []
        try:
            for raw in raws:
                typ, data = client.append(folder, None, None, raw)
                assert typ == "OK", data
                uids.append(int(data[0].decode().split("APPENDUID ")[1].split()[1].rstrip("]")))
        finally:
            client.logout()
        return uids

    def deliver(self, user: str, folder: str, raws: list[bytes]) -> None:
        """Drop messages straight into the maildir (fast bulk fill; UIDs assigned on read)."""
        base = self.maildir(user) if folder == "INBOX" else self.maildir(user) / f".{folder}"
        for sub in ("", "cur", "new", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for n, raw in enumerate(raws):
            path = base / "new" / f"{stamp}.P{os.getpid()}Q{n}.pectrack"
            path.write_bytes(raw)
            os.chown(path, _MAIL_UID, _MAIL_UID)
        for path in [self.dir / "mail" / user, self.maildir(user), base]:
            for sub in ("", "cur", "new", "tmp") if path == base else ("",):
                os.chown(path / sub, _MAIL_UID, _MAIL_UID)

    def flags(self, user: str, folder: str) -> dict[int, str]:
        """``{uid: "FLAGS (...)"}`` of every message in the folder."""
        client = self.connect(user)
        try:
            client.select(folder, readonly=True)
            typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert typ == "OK", data
            out: dict[int, str] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                text = item.decode()
                uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                out[uid] = text[text.index("FLAGS") :].split(")")[0] + ")"
            return out
        finally:
            client.logout()

    def uidvalidity(self, user: str, folder: str) -> int:
        client = self.connect(user)
        try:
            typ, data = client.status(folder, "(UIDVALIDITY)")
            assert typ == "OK", data
            return int(data[0].decode().split("UIDVALIDITY ")[1].rstrip(")"))
        finally:
            client.logout()

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Forget the folder's UID list and indexes: Dovecot assigns a new UIDVALIDITY.

        Call it while nobody has the mailbox open (kick the user first).
        """
        base = self.maildir(user) if folder == "INBOX" else self.maildir(user) / f".{folder}"
        for name in os.listdir(base):
            if name.startswith("dovecot"):
                (base / name).unlink()
        time.sleep(1.1)  # UIDVALIDITY is a timestamp: make sure it differs

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _session_members(sid: int) -> list[int]:
    """Live pids whose session id is ``sid`` (the master leads a new session: sid = its pid)."""
    return [
        pid for pid, fields in processes() if int(fields[3]) == sid and fields[0] not in ("Z", "X")
    ]
