"""KafkaTls: a verifying client context, or an error naming the file; never a prompt."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pipeline.dev.embedded import free_port
from pipeline.kafka.tls import KafkaTls, KafkaTlsError, client_options, handshake_error
from tests.support.tls import TlsPki


def test_plaintext_needs_no_options() -> None:
    assert client_options(None) == {}


def test_context_verifies_the_broker_and_carries_the_client_certificate(tmp_path: Path) -> None:
    pki = TlsPki(tmp_path)
    options = client_options(KafkaTls(pki.ca, pki.client_cert, pki.client_key))
    assert options["security_protocol"] == "SSL"
    context: ssl.SSLContext = options["ssl_context"]
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "pectrack test Kafka CA"),),)
    ]


def test_encrypted_key_is_an_error_not_a_prompt(tmp_path: Path) -> None:
    """A service has no terminal: OpenSSL must not ask for a pass phrase."""
    pki = TlsPki(tmp_path)
    key = serialization.load_pem_private_key(Path(pki.client_key).read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(KafkaTlsError, match="unencrypted key") as caught:
        KafkaTls(pki.ca, pki.client_cert, str(encrypted)).context()
    assert "secret" not in str(caught.value)


def test_key_without_certificate_is_refused() -> None:
    with pytest.raises(KafkaTlsError, match="key_file needs its cert_file"):
        KafkaTls(key_file="/k.pem")


def test_a_file_that_is_not_a_certificate_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(KafkaTlsError, match=r"ca_file .*junk\.pem"):
        KafkaTls(str(junk)).context()


async def test_an_unreachable_broker_is_not_called_a_tls_problem(tmp_path: Path) -> None:
    pki = TlsPki(tmp_path)
    port = free_port()  # nothing listens there
    assert await handshake_error(f"127.0.0.1:{port}", KafkaTls(pki.ca)) is None
    assert await handshake_error("not a bootstrap", KafkaTls(pki.ca)) is None
