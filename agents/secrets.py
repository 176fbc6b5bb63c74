"""Mailbox passwords by reference, read when the mailbox logs in (not when the config loads).

A fleet of agent pods shares one config of thousands of mailboxes; each pod only needs
(and only has mounted) the secrets of its own shard. So the config holds a
:class:`SecretRef` (a variable name or a file path) and the value is read at each login:

- a missing variable, or a missing, unreadable or empty file, makes that one mailbox fail
  to log in (:class:`SecretUnavailableError`: it is down and retried with backoff), never
  the process;
- a rotated password file is picked up at the next login, in particular at the retry that
  follows an authentication failure: no restart.

``{id}`` in a ``password_file`` path (usually given once in ``[mailbox_defaults]``) is
replaced by the mailbox id: ``password_file = "/run/secrets/pec/{id}"``. Mailbox ids
contain no ``/`` (``agents.config``), so the template cannot leave its directory.

Errors name the variable or the file, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ID_PLACEHOLDER", "MAX_SECRET_BYTES", "SecretRef", "SecretUnavailableError"]

ID_PLACEHOLDER = "{id}"
MAX_SECRET_BYTES = 64 * 1024  # a password file larger than this is not a password


class SecretUnavailableError(Exception):
    """The referenced secret cannot be read now (unset, missing, unreadable, empty)."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a password is: ``env`` (a variable name) or ``file`` (a path), exactly one.

    Equal references are equal configs: a rotated file's content is not a config change.
    """

    env: str | None = None
    file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference names exactly one of env, file")

    def reveal(self) -> str:
        """The password now; :class:`SecretUnavailableError` names what is missing."""
        if self.env is not None:
            value = self.environ.get(self.env)
            if not value:
                raise SecretUnavailableError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            with self.file.open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SecretUnavailableError(f"cannot read password_file {self.file}: {why}") from None
        if len(data) > MAX_SECRET_BYTES:
            raise SecretUnavailableError(f"password_file {self.file} is larger than 64 KiB")
        try:
            value = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SecretUnavailableError(f"password_file {self.file} is not UTF-8") from None
        if not value:
            raise SecretUnavailableError(f"password_file {self.file} is empty")
        return value

    def __str__(self) -> str:
        return f"${self.env}" if self.env is not None else f"file {self.file}"


def expand_template(path: str, mailbox_id: str) -> str:
    """``"/run/secrets/pec/{id}"`` -> ``"/run/secrets/pec/comune-x"`` (only ``{id}``)."""
    return path.replace(ID_PLACEHOLDER, mailbox_id)
