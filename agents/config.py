"""Agent configuration: one TOML file, secrets by reference only.

::

    [kafka]
    bootstrap = "kafka-0:9092,kafka-1:9092"
    idempotence = true                 # false for the embedded broker (no InitProducerId)
    tls = true                         # optional: verified TLS to the brokers, and with it
    ca_file = "kafka-ca.pem"           #   their CA (default: the system trust store) and a
    cert_file = "agent.pem"            #   client certificate (mutual TLS), key_file if apart
    replication = 3                    # of the topics it creates (never 1 by default)
    sasl_mechanism = "SCRAM-SHA-512"   # optional SASL (pipeline.kafka.sasl): with
    sasl_username = "pectrack-agent"   #   sasl_password_file/_env, or sasl_token_file
    sasl_password_file = "/run/secrets/kafka/password"

    [mailbox_defaults]                 # merged under every [[mailbox]]
    host = "imaps.pec.aruba.it"
    folders = ["INBOX", "\\Sent"]         # "\\Sent": whichever folder has that attribute
    since = 2025-01-01                 # optional: first sync reads from this date (or
                                       #   since_days = 365); agents/history.py

    [[mailbox]]
    id = "comune-x"
    user = "protocollo@pec.comune-x.it"
    password_env = "PEC_COMUNE_X_PASSWORD"     # or password_file = "/run/secrets/comune-x"

A literal ``password`` key is rejected: the config text never holds a secret. Secrets are
read when a mailbox logs in, not here (:mod:`agents.secrets`): ``password_file =
"/run/secrets/pec/{id}"`` in ``[mailbox_defaults]`` serves every mailbox, and a missing
one downs that mailbox only. Errors are :class:`ConfigError`; their messages name keys
and variables, never a secret's value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agents.history import (
    HISTORY_KEYS,
    HistoryError,
    HistoryLimit,
    parse_history,
    with_defaults,
)
from agents.secrets import SecretRef, expand_template
from pipeline.contracts import topics
from pipeline.kafka.sasl import KafkaSasl, KafkaSaslError
from pipeline.kafka.tls import KafkaTls, KafkaTlsError

__all__ = [
    "SENT_NAMES",
    "SPECIAL_USE",
    "AgentConfig",
    "AgentLimits",
    "ConfigError",
    "KafkaSettings",
    "MailboxConfig",
    "Secret",
    "TlsMode",
    "load_config",
    "parse_config",
]

# A folder given as a special-use attribute (RFC 6154) is looked up with LIST at each
# login: ``"\\Sent"`` finds "Posta inviata" on one provider and "Sent" on another.
SPECIAL_USE = frozenset({"\\Sent", "\\Archive"})

# Usual names of a Sent folder configured by name rather than as ``"\\Sent"`` (the last
# hierarchy level, casefolded): only used to warn when a mailbox seems to have none.
SENT_NAMES = frozenset(
    {"sent", "sent items", "sent messages", "posta inviata", "inviata", "inviati",
     "elementi inviati", "posta inviata pec"}
)  # fmt: skip

_MAILBOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class ConfigError(ValueError):
    """The agent configuration is invalid or a referenced secret is unavailable."""


class TlsMode(StrEnum):
    """How the IMAP connection is protected: implicit TLS (993), STARTTLS (143), or none."""

    TLS = "tls"
    STARTTLS = "starttls"
    PLAIN = "plain"


class Secret:
    """A password whose ``repr``/``str`` never show it; ``reveal()`` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """One PEC mailbox: where it lives, how to log in, which folders to ingest."""

    id: str
    host: str
    port: int
    tls: TlsMode
    verify_tls: bool
    ca_file: Path | None
    user: str
    password: Secret | SecretRef  # SecretRef from a config file: read at each login
    folders: tuple[str, ...]
    history: HistoryLimit | None = None  # since / since_days: how far a first sync reaches

    @property
    def has_sent_folder(self) -> bool:
        """Whether a folder is ``"\\Sent"`` or named like one (``INBOX/Sent``, ``Inviata``)."""
        leaves = (re.split(r"[/.]", f)[-1].casefold() for f in self.folders)
        return "\\Sent" in self.folders or any(leaf in SENT_NAMES for leaf in leaves)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where records go. ``idempotence`` is on for Apache Kafka, off for the embedded broker."""

    bootstrap: str
    topic: str = topics.RAW
    dead_letter_topic: str = topics.RAW_DEAD_LETTER
    cursor_topic: str = topics.AGENT_CURSORS
    idempotence: bool = True
    create_topics: bool = True
    partitions: int = topics.DEFAULT_PARTITIONS
    client_id: str = "pectrack-agent"
    tls: KafkaTls | None = None  # None: plaintext (``tls = true`` in [kafka] turns it on)
    sasl: KafkaSasl | None = None  # None: no SASL (``sasl_mechanism`` in [kafka] turns it on)
    # Replicas of the topics the agent creates (with min.insync.replicas = 2 from 3 on);
    # never lowered to fit: a one-broker cluster refuses 3, so say 1 there explicitly.
    replication: int = topics.DEFAULT_REPLICATION


@dataclass(frozen=True, slots=True)
class AgentLimits:
    """Batching, size and timing bounds; see ``examples/agent.toml`` for the reasons."""

    max_message_bytes: int = 10 * 1024 * 1024
    batch_max_messages: int = 100
    batch_max_bytes: int = 8 * 1024 * 1024
    command_timeout: float = 60.0
    max_concurrent_syncs: int = 32
    max_concurrent_connects: int = 64
    idle_seconds: float = 25 * 60.0
    poll_seconds: float = 60.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    progress_every: int = 1000
    progress_seconds: float = 30.0  # backfill.progress log line while syncs are under way


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything one ``pectrack agent`` process needs."""

    kafka: KafkaSettings
    limits: AgentLimits
    mailboxes: tuple[MailboxConfig, ...]


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate ``path``; secrets come from ``environ`` (default ``os.environ``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_config(data, os.environ if environ is None else environ, base_dir=path.parent)


def parse_config(
    data: Mapping[str, Any], environ: Mapping[str, str], *, base_dir: Path = Path()
) -> AgentConfig:
    """Validate a decoded TOML document (pure: secrets are only referenced)."""
    kafka = _section(data, "kafka")
    if "bootstrap" not in kafka:
        raise ConfigError("[kafka] bootstrap is required")
    kafka_settings = _kafka(kafka, base_dir)
    limits = AgentLimits(**_typed(_section(data, "limits"), AgentLimits, "limits"))
    if limits.idle_seconds > 29 * 60:
        raise ConfigError("[limits] idle_seconds must stay under 29 minutes (RFC 2177)")
    defaults = _section(data, "mailbox_defaults")
    raw_boxes = data.get("mailbox", [])
    if not isinstance(raw_boxes, list) or not raw_boxes:
        raise ConfigError("at least one [[mailbox]] is required")
    boxes = tuple(
        _mailbox(with_defaults(defaults, box), environ, base_dir)
        for box in raw_boxes
        if _is_table(box)
    )
    seen: set[str] = set()
    for box in boxes:
        if box.id in seen:
            raise ConfigError(f"duplicate mailbox id {box.id!r}")
        seen.add(box.id)
    return AgentConfig(kafka=kafka_settings, limits=limits, mailboxes=boxes)


_KAFKA_TLS_FILES = ("ca_file", "cert_file", "key_file")
_KAFKA_SASL_KEYS = (
    "sasl_mechanism",
    "sasl_username",
    "sasl_password_env",
    "sasl_password_file",
    "sasl_token_file",
    "sasl_allow_plaintext",
)


def _kafka(kafka: Mapping[str, Any], base_dir: Path) -> KafkaSettings:
    """[kafka]; ``tls = true`` with optional ``ca_file``/``cert_file``/``key_file``
    (relative to the config file) turns on verified TLS to the brokers."""
    special = {"tls", *_KAFKA_TLS_FILES, *_KAFKA_SASL_KEYS}
    plain = {k: v for k, v in kafka.items() if k not in special}
    settings = KafkaSettings(**_typed(plain, KafkaSettings, "kafka"))
    settings = replace(settings, sasl=_kafka_sasl(kafka, base_dir))
    tls = kafka.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError("[kafka] tls must be true or false")
    files: dict[str, str] = {}
    for key in _KAFKA_TLS_FILES:
        value = kafka.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"[kafka] {key} must be a file path")
        if not tls:
            raise ConfigError(f"[kafka] {key} is set but tls is not: add tls = true")
        files[key] = str(base_dir / value)
    if not tls:
        return settings
    try:
        tls_settings = KafkaTls(**files)
        tls_settings.context()  # unreadable or not PEM: say so now, not at first connect
    except KafkaTlsError as exc:
        raise ConfigError(f"[kafka] {exc}") from None
    return replace(settings, tls=tls_settings)


def _kafka_sasl(kafka: Mapping[str, Any], base_dir: Path) -> KafkaSasl | None:
    """``sasl_mechanism`` (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) with ``sasl_username`` and
    ``sasl_password_env``/``sasl_password_file``, or ``sasl_token_file`` (files relative
    to the config; read when connecting, never here)."""
    given = {key: kafka[key] for key in _KAFKA_SASL_KEYS if key in kafka}
    if not given:
        return None
    if "sasl_mechanism" not in given:
        raise ConfigError(f"[kafka] {sorted(given)[0]} is set but sasl_mechanism is not")
    for key, value in given.items():
        wanted = bool if key == "sasl_allow_plaintext" else str
        if not isinstance(value, wanted) or value == "":
            raise ConfigError(
                f"[kafka] {key} must be {'true or false' if wanted is bool else 'text'}"
            )
    files = {
        key: str(base_dir / given[f"sasl_{key}"])
        for key in ("password_file", "token_file")
        if f"sasl_{key}" in given
    }
    try:
        return KafkaSasl(
            mechanism=given["sasl_mechanism"],
            username=given.get("sasl_username"),
            password_env=given.get("sasl_password_env"),
            password_file=files.get("password_file"),
            token_file=files.get("token_file"),
            allow_plaintext=given.get("sasl_allow_plaintext", False),
        )
    except KafkaSaslError as exc:
        raise ConfigError(f"[kafka] {exc}") from None


def _is_table(value: object) -> bool:
    if not isinstance(value, dict):
        raise ConfigError("each [[mailbox]] must be a table")
    return True


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _typed(table: Mapping[str, Any], cls: Any, where: str) -> dict[str, Any]:
    """Check keys and value types against the dataclass defaults/annotations."""
    fields = cls.__dataclass_fields__
    out: dict[str, Any] = {}
    for key, given in table.items():
        if key not in fields:
            raise ConfigError(f"[{where}] unknown key {key!r}")
        expected = fields[key].type
        value: Any = given
        if expected == "float" and isinstance(given, int) and not isinstance(given, bool):
            value = float(given)
        kind: type[Any] = {"str": str, "int": int, "float": float, "bool": bool}[expected]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"[{where}] {key} must be {expected}")
        if kind in (int, float) and float(value) <= 0:
            raise ConfigError(f"[{where}] {key} must be positive")
        out[key] = value
    return out


_MAILBOX_KEYS = {
    "id",
    "host",
    "port",
    "tls",
    "verify_tls",
    "ca_file",
    "user",
    "password_env",
    "password_file",
    "folders",
    *HISTORY_KEYS,
}


def _mailbox(box: Mapping[str, Any], environ: Mapping[str, str], base_dir: Path) -> MailboxConfig:
    box_id = box.get("id")
    if not isinstance(box_id, str) or not _MAILBOX_ID.match(box_id):
        raise ConfigError(f"mailbox id {box_id!r} must match {_MAILBOX_ID.pattern}")
    where = f"mailbox {box_id!r}"
    if "password" in box:
        raise ConfigError(f"{where}: no literal password; use password_env or password_file")
    unknown = set(box) - _MAILBOX_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        tls = TlsMode(box.get("tls", "tls"))
    except ValueError:
        raise ConfigError(f"{where}: tls must be one of {[m.value for m in TlsMode]}") from None
    port = box.get("port", 993 if tls is TlsMode.TLS else 143)
    folders = box.get("folders", ["INBOX", "Sent"])
    host, user = box.get("host"), box.get("user")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: host is required")
    if not isinstance(user, str) or not user:
        raise ConfigError(f"{where}: user is required")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: port must be 1..65535")
    if not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders):
        raise ConfigError(f"{where}: folders must be a list of folder names")
    if "INBOX" not in folders or len(set(folders)) != len(folders):
        raise ConfigError(f"{where}: folders must include INBOX once (and the Sent folder)")
    for folder in folders:
        if folder.startswith("\\") and folder not in SPECIAL_USE:
            raise ConfigError(f"{where}: {folder!r}: special-use names are {sorted(SPECIAL_USE)}")
    verify = box.get("verify_tls", True)
    if not isinstance(verify, bool):
        raise ConfigError(f"{where}: verify_tls must be true or false")
    ca_file = box.get("ca_file")
    return MailboxConfig(
        id=box_id,
        host=host,
        port=port,
        tls=tls,
        verify_tls=verify,
        ca_file=base_dir / ca_file if isinstance(ca_file, str) else None,
        user=user,
        password=_secret(box, environ, base_dir, where),
        folders=tuple(folders),
        history=_history(box, where),
    )


def _history(box: Mapping[str, Any], where: str) -> HistoryLimit | None:
    try:
        return parse_history(box, where)
    except HistoryError as exc:
        raise ConfigError(str(exc)) from None


def _secret(
    box: Mapping[str, Any], environ: Mapping[str, str], base_dir: Path, where: str
) -> SecretRef:
    """The password's reference; read at each login (:mod:`agents.secrets`), so a missing
    secret downs that mailbox only and a rotated file is picked up without a restart."""
    env_name, file_name = box.get("password_env"), box.get("password_file")
    if (env_name is None) == (file_name is None):
        raise ConfigError(f"{where}: give exactly one of password_env, password_file")
    if env_name is not None:
        if not isinstance(env_name, str) or not env_name:
            raise ConfigError(f"{where}: password_env must be a variable name")
        return SecretRef(env=env_name, environ=environ)
    if not isinstance(file_name, str) or not file_name:
        raise ConfigError(f"{where}: password_file must be a path")
    return SecretRef(file=base_dir / expand_template(file_name, str(box["id"])))
