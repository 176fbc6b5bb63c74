"""Agent config: TOML in, frozen settings out; secrets only by reference, never shown."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agents.agent import run_agent
from agents.config import ConfigError, Secret, TlsMode, load_config, parse_config
from agents.secrets import SecretUnavailableError
from pipeline.kafka.tls import KafkaTls, client_options
from tests.support.tls import TlsPki

BASE = {
    "kafka": {"bootstrap": "k:9092", "idempotence": False},
    "mailbox_defaults": {"host": "imap.example.it", "folders": ["INBOX", "Posta inviata"]},
}


def doc(*boxes: Mapping[str, object], **extra: object) -> dict[str, object]:
    return {**BASE, "mailbox": list(boxes), **extra}


def box_doc() -> dict[str, object]:
    return {"id": "a", "user": "u", "password_env": "PW"}


def test_defaults_are_merged_and_tls_verification_is_on() -> None:
    """A mailbox inherits mailbox_defaults; TLS on port 993 with verification by default."""
    config = parse_config(
        doc({"id": "a", "user": "u@pec.it", "password_env": "PW_A"}), {"PW_A": "s3cret"}
    )
    (box,) = config.mailboxes
    assert box.host == "imap.example.it"
    assert (box.tls, box.port, box.verify_tls) == (TlsMode.TLS, 993, True)
    assert box.folders == ("INBOX", "Posta inviata")
    sent = parse_config(doc({**box_doc(), "folders": ["INBOX", "\\Sent"]}), {"PW": "x"})
    assert sent.mailboxes[0].folders == ("INBOX", "\\Sent")
    assert box.password.reveal() == "s3cret"
    assert config.kafka.idempotence is False
    assert config.kafka.topic == "pec.raw"


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    """password_file paths resolve next to the config file; a trailing newline is dropped."""
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "agent.toml").write_text(
        '[kafka]\nbootstrap = "k:9092"\n[[mailbox]]\nid = "a"\nhost = "h"\nuser = "u"\n'
        'password_file = "pw"\n'
    )
    config = load_config(tmp_path / "agent.toml", environ={})
    assert config.mailboxes[0].password.reveal() == "from-file"


def test_literal_password_is_rejected() -> None:
    """The config text never holds a secret: a ``password`` key is an error."""
    with pytest.raises(ConfigError, match="no literal password"):
        parse_config(doc({"id": "a", "user": "u", "password": "hunter2"}), {})


def test_missing_secret_names_the_variable_not_a_value() -> None:
    """An unset variable is not a config error (that mailbox only is down, issue #16): it
    is reported by name when the mailbox logs in."""
    config = parse_config(doc({"id": "a", "user": "u", "password_env": "PW_MISSING"}), {})
    with pytest.raises(SecretUnavailableError, match="PW_MISSING"):
        config.mailboxes[0].password.reveal()


def test_errors_never_contain_the_secret() -> None:
    """A validation error after the secret was read does not echo it."""
    boxes = [
        {"id": "a", "user": "u", "password_env": "PW"},
        {"id": "a", "user": "u", "password_env": "PW"},
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(doc(*boxes), {"PW": "top-secret-value"})
    assert "duplicate" in str(caught.value)
    assert "top-secret-value" not in str(caught.value)


def test_secret_repr_is_masked() -> None:
    """repr/str of a Secret, and of the dataclass holding it, hide the value."""
    config = parse_config(doc({"id": "a", "user": "u", "password_env": "PW"}), {"PW": "xyzzy"})
    assert "xyzzy" not in repr(config)
    assert str(Secret("xyzzy")) == "Secret('********')"


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ({"id": "a b", "user": "u", "password_env": "PW"}, "mailbox id"),
        ({"id": "a", "user": "u", "password_env": "PW", "folders": ["Sent"]}, "INBOX"),
        ({"id": "a", "user": "u", "password_env": "PW", "tls": "ssl3"}, "tls must be"),
        ({"id": "a", "user": "u", "password_env": "PW", "port": 70000}, "port"),
        ({"id": "a", "user": "u", "password_env": "PW", "colour": "red"}, "unknown keys"),
        ({"id": "a", "user": "u", "password_env": "PW", "password_file": "f"}, "exactly one"),
        ({"id": "a", "password_env": "PW"}, "user is required"),
        (
            {"id": "a", "user": "u", "password_env": "PW", "folders": ["INBOX", "\\Bogus"]},
            "special-use",
        ),
    ],
)
def test_invalid_mailboxes_are_rejected(box: dict[str, object], message: str) -> None:
    """Each malformed mailbox entry fails with a message naming the problem."""
    with pytest.raises(ConfigError, match=message):
        parse_config(doc(box), {"PW": "x"})


def test_limits_are_type_checked() -> None:
    """[limits] rejects unknown keys, wrong types and non-positive values; ints pass as floats."""
    box = {"id": "a", "user": "u", "password_env": "PW"}
    config = parse_config(doc(box, limits={"command_timeout": 5}), {"PW": "x"})
    assert config.limits.command_timeout == 5.0
    for limits, message in [
        ({"batch_max_messages": "10"}, "must be int"),
        ({"batch_max_messages": 0}, "positive"),
        ({"nonsense": 1}, "unknown key"),
        ({"idle_seconds": 1800}, "RFC 2177"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(doc(box, limits=limits), {"PW": "x"})


def test_kafka_bootstrap_is_required() -> None:
    """Without [kafka] bootstrap the agent has nowhere to publish."""
    with pytest.raises(ConfigError, match="bootstrap"):
        parse_config({"mailbox": [{"id": "a"}]}, {})


def _kafka_doc(**kafka: object) -> dict[str, object]:
    return {**doc(box_doc()), "kafka": {**BASE["kafka"], **kafka}}


def test_kafka_is_plaintext_unless_tls_is_asked_for() -> None:
    assert parse_config(doc(box_doc()), {"PW": "x"}).kafka.tls is None


def test_kafka_tls_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    """tls = true: a verifying context over the CA and client certificate named."""
    pki = TlsPki(tmp_path / "pki")
    data = _kafka_doc(tls=True, ca_file="pki/ca.pem", cert_file="pki/client.pem",
                      key_file="pki/client-key.pem")  # fmt: skip
    tls = parse_config(data, {"PW": "x"}, base_dir=tmp_path).kafka.tls
    assert tls == KafkaTls(pki.ca, pki.client_cert, pki.client_key)
    context = client_options(tls)["ssl_context"]
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert parse_config(_kafka_doc(tls=True), {"PW": "x"}).kafka.tls == KafkaTls()


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"ca_file": "ca.pem"}, "ca_file is set but tls is not"),
        ({"tls": "yes"}, "tls must be true or false"),
        ({"tls": True, "ca_file": ""}, "ca_file must be a file path"),
        ({"tls": True, "key_file": "k.pem"}, "key_file needs its cert_file"),
        ({"tls": True, "ca_file": "missing.pem"}, "ca_file .*missing.pem: No such file"),
        ({"tls": True, "cert_file": "agent.toml"}, "cert_file .*agent.toml"),
    ],
)
def test_bad_kafka_tls_settings_are_named(
    kafka: dict[str, object], message: str, tmp_path: Path
) -> None:
    (tmp_path / "agent.toml").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=message):
        parse_config(_kafka_doc(**kafka), {"PW": "x"}, base_dir=tmp_path)


def test_example_config_is_valid() -> None:
    """examples/agent.toml parses once its password variables are set."""
    example = Path(__file__).resolve().parents[2] / "examples" / "agent.toml"
    env = {"PEC_COMUNE_X_PASSWORD": "a", "PEC_STUDIO_Y_PASSWORD": "b"}
    config = load_config(example, environ=env)
    assert len(config.mailboxes) == 2


@pytest.mark.parametrize(
    ("folders", "has_sent"),
    [
        (["INBOX"], False),
        (["INBOX", "\\Archive"], False),
        (["INBOX", "Archivio"], False),
        (["INBOX", "\\Sent"], True),
        (["INBOX", "Sent"], True),
        (["INBOX", "INBOX.Sent"], True),
        (["INBOX", "Posta inviata"], True),
        (["INBOX", "INBOX/Elementi inviati"], True),
    ],
)
def test_sent_folder_is_recognised_by_attribute_or_usual_name(
    folders: list[str], has_sent: bool
) -> None:
    """``\\Sent`` or a usual Sent name (at any hierarchy level) counts as a Sent folder."""
    config = parse_config(doc({**box_doc(), "folders": folders}), {"PW": "x"})
    assert config.mailboxes[0].has_sent_folder is has_sent


async def test_mailbox_without_sent_folder_is_accepted_with_a_startup_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An INBOX-only mailbox is valid, but the agent warns at start-up, once per such
    mailbox, that sent messages will only come from pec.submissions."""
    caplog.set_level(logging.WARNING, "agents.agent")
    boxes = [
        {"id": "inbox-only", "user": "u", "password_env": "PW", "folders": ["INBOX"]},
        {"id": "with-sent", "user": "u", "password_env": "PW", "folders": ["INBOX", "\\Sent"]},
    ]
    config = parse_config(doc(*boxes), {"PW": "x"})
    stop = asyncio.Event()
    stop.set()  # log the start-up checks, then return before connecting anywhere
    await run_agent(config, registry=CollectorRegistry(), stop=stop)
    warned = [r for r in caplog.records if r.getMessage() == "config.no_sent_folder"]
    assert [r.fields["mailbox"] for r in warned] == ["inbox-only"]  # type: ignore[attr-defined]
    detail = warned[0].fields["detail"]  # type: ignore[attr-defined]
    assert "sent messages will only be registered from pec.submissions" in detail
