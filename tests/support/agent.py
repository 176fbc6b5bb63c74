"""Agent configs for tests and benchmarks: a TOML file pointing at test servers.

::

    path = write_config(tmp_path, broker, dovecot, [1, 2, 3], poll_seconds=1)
    path = write_config(tmp_path, broker, dovecot, [4], tls="starttls",
                        extra={4: ['ca_file = "/path/cert.pem"']}, wrong_password={4})

Passwords go to ``secret-N`` files next to the config (``password_file``), as in
production; mailbox ids are ``box-0001``...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dev.embedded import EmbeddedBroker
from tests.support.dovecot import Dovecot

__all__ = ["write_config"]


def write_config(
    directory: Path,
    broker: EmbeddedBroker,
    server: Dovecot,
    users: list[int],
    *,
    folders: tuple[str, ...] = ("INBOX", "Sent"),
    wrong_password: set[int] = frozenset(),  # type: ignore[assignment]
    tls: str = "plain",
    extra: dict[int, list[str]] | None = None,
    **limits: Any,
) -> Path:
    """An agent TOML for ``users`` (passwords in files next to it) on these servers."""
    settings = {"command_timeout": 10, "backoff_base": 0.2, "backoff_cap": 2, **limits}
    lines = [
        "[kafka]",
        f'bootstrap = "{broker.bootstrap}"',
        "idempotence = false",
        "partitions = 3",
        "[limits]",
        *(f"{k} = {v}" for k, v in settings.items()),
        "[mailbox_defaults]",
        f'host = "{server.host}"',
        f"port = {server.port}",
        f'tls = "{tls}"',
        f"folders = [{', '.join(repr(f).replace(chr(39), chr(34)) for f in folders)}]",
    ]
    for index in users:
        secret = directory / f"secret-{index}"
        secret.write_text(server.password(index) + ("-wrong" if index in wrong_password else ""))
        lines += [
            "[[mailbox]]",
            f'id = "box-{index:04d}"',
            f'user = "{server.user(index)}"',
            f'password_file = "{secret.name}"',
            *(extra or {}).get(index, []),
        ]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
