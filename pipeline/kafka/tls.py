"""TLS between pectrack and Kafka, the same for every client it makes (agent, workers,
``pectrack events``).

Off by default: the embedded broker and the compose file speak plaintext on a private
network. On, the broker's certificate is verified against ``ca_file`` (else the system
trust store) and its host name is checked; there is no switch to turn verification off.
``cert_file`` (with ``key_file``, or a PEM holding both) adds a client certificate: mutual
TLS, which is also how Strimzi's ``tls`` listener authentication identifies a client. The
key must not be encrypted (Strimzi's ``user.key`` is not): a service has no one to ask.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["KafkaTls", "KafkaTlsError", "client_options", "handshake_error"]


class KafkaTlsError(ValueError):
    """A TLS file that cannot be used; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class KafkaTls:
    ca_file: str | None = None  # PEM of the CA(s) that sign the brokers' certificates
    cert_file: str | None = None  # client certificate (PEM), for mutual TLS
    key_file: str | None = None  # its private key, if not in cert_file

    def __post_init__(self) -> None:
        if self.key_file and not self.cert_file:
            raise KafkaTlsError("a Kafka TLS key_file needs its cert_file")

    def context(self) -> ssl.SSLContext:
        """A verifying client context (TLS 1.2 or later, host name checked)."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except OSError as exc:  # ssl.SSLError too
            raise KafkaTlsError(f"Kafka TLS ca_file {self.ca_file}: {_why(exc)}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            try:
                # An encrypted key fails here instead of OpenSSL prompting on a terminal.
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except OSError as exc:  # ssl.SSLError too
                raise KafkaTlsError(
                    f"Kafka TLS cert_file {self.cert_file}: {_why(exc)} (expected PEM: the "
                    "certificate, and its unencrypted key here or in key_file)"
                ) from None
        return context


def client_options(tls: KafkaTls | None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: none for plaintext."""
    if tls is None:
        return {}
    return {"security_protocol": "SSL", "ssl_context": tls.context()}


async def handshake_error(bootstrap: str, tls: KafkaTls, timeout: float = 5.0) -> str | None:
    """Why a TLS handshake with the first bootstrap broker fails, or ``None`` if it works
    (or the broker cannot be reached at all: that is not a TLS problem). aiokafka reports
    a refused certificate only as a connection error; this names the cause, e.g.
    ``certificate verify failed: unable to get local issuer certificate``."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    writer = None
    try:
        context = tls.context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port), ssl=context), timeout
        )
        # TLS 1.3: a server refuses the client's certificate after the handshake; the
        # connection then ends at once. A broker that accepted it waits for a request.
        if await asyncio.wait_for(reader.read(1), 0.5) == b"":
            return "the broker hung up right after the TLS handshake (client certificate refused?)"
    except ssl.SSLError as exc:
        return str(getattr(exc, "verify_message", None) or exc.reason or exc)[:200]
    except (KafkaTlsError, OSError, ValueError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
    return None


def _no_password() -> bytes:
    return b""


def _why(exc: OSError) -> str:
    """``No such file or directory``, ``PEM lib``, ...: never the file's content."""
    reason = getattr(exc, "reason", None)  # ssl.SSLError
    return str(reason or exc.strerror or type(exc).__name__)
