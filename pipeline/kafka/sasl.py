"""SASL authentication to Kafka, the same for every client pectrack makes (agent, workers,
``pectrack events``); the sibling of :mod:`pipeline.kafka.tls`.

Mechanisms: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` (a user name and a password)
and ``OAUTHBEARER`` (a token). Over TLS (``SASL_SSL``, the TLS settings of
:mod:`pipeline.kafka.tls`) or not (``SASL_PLAINTEXT``: PLAIN then sends the password in
clear, so it is refused without TLS unless ``allow_plaintext`` says the network is private).

Secrets come from the environment or from files, never from a config text or a flag:
``password_env``/``password_file`` for the password; ``token_file`` for OAUTHBEARER, read
again at every authentication (each new broker connection), so an external refresher (a
sidecar, a CronJob) that rewrites the file is picked up without a restart. Errors name the
variable or file, never a value; ``repr`` shows no secret.

aiokafka reports a refused authentication only as "Unable to bootstrap" (and a refused
SCRAM exchange as ``KeyError: 'v'``): :func:`auth_error` connects once more and names the
cause in a sentence an operator can act on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider

from pipeline.kafka.tls import KafkaTls, client_options

__all__ = [
    "MECHANISMS",
    "FileTokenProvider",
    "KafkaSasl",
    "KafkaSaslError",
    "auth_error",
    "faust_credentials",
    "kafka_client_options",
]

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
_MAX_SECRET_BYTES = 64 * 1024


class KafkaSaslError(ValueError):
    """A SASL setting that cannot be used; the message names the setting, never a secret."""


def _read_secret(path: str, what: str) -> str:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(_MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise KafkaSaslError(f"Kafka SASL {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_SECRET_BYTES:
        raise KafkaSaslError(f"Kafka SASL {what} {path}: larger than 64 KiB")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KafkaSaslError(f"Kafka SASL {what} {path}: not UTF-8") from None
    if not value:
        raise KafkaSaslError(f"Kafka SASL {what} {path} is empty")
    return value


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """An OAUTHBEARER token read from ``path`` each time aiokafka asks (each connection)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def token(self) -> str:
        return _read_secret(self.path, "token_file")

    def __repr__(self) -> str:
        return f"FileTokenProvider({self.path!r})"


@dataclass(frozen=True, slots=True)
class KafkaSasl:
    """How a client authenticates; validated on construction (nothing is read then)."""

    mechanism: str
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    token_file: str | None = None
    allow_plaintext: bool = False  # PLAIN without TLS: only on a private network
    environ: Mapping[str, str] = field(
        default_factory=lambda: os.environ, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise KafkaSaslError(
                f"Kafka SASL mechanism {self.mechanism!r} is not one of {list(MECHANISMS)}"
            )
        if self.mechanism == "OAUTHBEARER":
            if not self.token_file:
                raise KafkaSaslError("Kafka SASL OAUTHBEARER needs a token_file")
            if self.username or self.password_env or self.password_file:
                raise KafkaSaslError(
                    "Kafka SASL OAUTHBEARER takes a token_file, not a username or password"
                )
            return
        if not self.username:
            raise KafkaSaslError(f"Kafka SASL {self.mechanism} needs a username")
        if bool(self.password_env) == bool(self.password_file):
            raise KafkaSaslError(
                f"Kafka SASL {self.mechanism}: give exactly one of password_env, password_file"
            )
        if self.token_file:
            raise KafkaSaslError(f"Kafka SASL {self.mechanism} takes no token_file")

    def password(self) -> str:
        """The password now (from the variable or the file); :class:`KafkaSaslError` if absent."""
        if self.password_env:
            value = self.environ.get(self.password_env)
            if not value:
                raise KafkaSaslError(
                    f"Kafka SASL password: environment variable {self.password_env} is not set"
                )
            return value
        assert self.password_file is not None
        return _read_secret(self.password_file, "password_file")

    def options(self, tls: KafkaTls | None) -> dict[str, Any]:
        """aiokafka keyword arguments: SASL over TLS (``tls``) or over plaintext."""
        if self.mechanism == "PLAIN" and tls is None and not self.allow_plaintext:
            raise KafkaSaslError(
                "Kafka SASL PLAIN without TLS sends the password in clear: turn TLS on, "
                "or set allow_plaintext for a private network"
            )
        out: dict[str, Any] = {
            "security_protocol": "SASL_SSL" if tls is not None else "SASL_PLAINTEXT",
            "sasl_mechanism": self.mechanism,
        }
        if tls is not None:
            out["ssl_context"] = tls.context()
        if self.mechanism == "OAUTHBEARER":
            assert self.token_file is not None
            out["sasl_oauth_token_provider"] = FileTokenProvider(self.token_file)
        else:
            out["sasl_plain_username"] = self.username
            out["sasl_plain_password"] = self.password()
        return out


def kafka_client_options(tls: KafkaTls | None, sasl: KafkaSasl | None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: TLS and/or SASL, none for plaintext."""
    if sasl is None:
        return client_options(tls)
    return sasl.options(tls)


def faust_credentials(tls: KafkaTls | None, sasl: KafkaSasl | None) -> dict[str, Any]:
    """``broker_credentials`` for a faust app: the same TLS and SASL as every other client
    (faust hands them to aiokafka as :func:`kafka_client_options` would)."""
    import faust  # noqa: PLC0415 - the workers' dependency, not the agent's

    context = tls.context() if tls is not None else None
    if sasl is None:
        return {"broker_credentials": faust.SSLCredentials(context)} if context else {}
    sasl.options(tls)  # the same checks (PLAIN over plaintext, a readable password)
    credentials: Any
    if sasl.mechanism == "OAUTHBEARER":
        assert sasl.token_file is not None
        credentials = faust.auth.OAuthCredentials(
            oauth_cb=FileTokenProvider(sasl.token_file), ssl_context=context
        )
    else:
        credentials = faust.SASLCredentials(
            username=sasl.username,
            password=sasl.password(),
            mechanism=sasl.mechanism,
            ssl_context=context,
        )
    return {"broker_credentials": credentials}


async def auth_error(
    bootstrap: str, tls: KafkaTls | None, sasl: KafkaSasl | None, timeout: float = 5.0
) -> str | None:
    """Why authenticating to the first bootstrap broker fails, or ``None`` if it works (or
    the broker cannot be reached at all: not an authentication problem).

    aiokafka's clients only say "Unable to bootstrap" (the cause goes to a log line, or,
    for a refused SCRAM exchange, escapes as ``KeyError: 'v'``); this connects once with
    the same settings and names the cause. Never includes a secret.
    """
    from aiokafka import errors  # noqa: PLC0415 - only on a failure path
    from aiokafka.conn import create_conn  # noqa: PLC0415
    from aiokafka.protocol.metadata import MetadataRequest  # noqa: PLC0415

    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    try:
        options = kafka_client_options(tls, sasl)
    except (KafkaSaslError, ValueError) as exc:
        return str(exc)
    mechanism = sasl.mechanism if sasl is not None else None
    conn = None
    try:
        conn = await asyncio.wait_for(create_conn(host.strip("[]"), int(port), **options), timeout)
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
    except errors.UnsupportedSaslMechanismError as exc:
        return f"the broker does not offer SASL {mechanism}: {exc}"[:300]
    except (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError):
        return (
            f"the broker refused the SASL {mechanism} credentials (wrong user, password or token)"
        )
    except KeyError:  # aiokafka's SCRAM client on a server-final "e=..." message
        return (
            f"the broker ended the SASL {mechanism} exchange with an error: unknown user or "
            "wrong password"
        )
    except errors.KafkaConnectionError:
        if mechanism is None:
            return (  # a front end whose broker is down looks the same: "probably"
                "the broker hung up on an unauthenticated request: it probably requires "
                "authentication (configure SASL)"
            )
        return (
            f"the broker closed the connection during SASL {mechanism}: it does not offer "
            "this mechanism, or refused the client"
        )
    except (errors.KafkaError, OSError, TimeoutError, ValueError):
        return None
    except Exception:  # a diagnosis must never take the caller down
        return None
    finally:
        if conn is not None:
            conn.close()
    return None
