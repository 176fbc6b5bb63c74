"""A test PKI for TLS to Kafka: a CA, a server certificate for 127.0.0.1, a client one.

::

    pki = TlsPki(tmp_path)                      # PEM files under tmp_path
    pki.server_context(require_client=True)     # for a TLS front end (TcpProxy(ssl=...))
    KafkaTls(pki.ca, pki.client_cert, pki.client_key)   # what a client is configured with
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsPki"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TlsPki:
    """Files: ``ca``, ``server_cert``/``server_key``, ``client_cert``/``client_key``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC) - timedelta(minutes=5)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("pectrack test Kafka CA"))
            .issuer_name(_name("pectrack test Kafka CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = str(directory / "ca.pem")
        Path(self.ca).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._leaf(
            directory,
            "server",
            ca_cert=ca_cert,
            ca_key=ca_key,
            now=now,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        self.client_cert, self.client_key = self._leaf(
            directory,
            "client",
            ca_cert=ca_cert,
            ca_key=ca_key,
            now=now,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    @staticmethod
    def _leaf(
        directory: Path,
        name: str,
        *,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        now: datetime,
        usage: x509.ObjectIdentifier,
    ) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"pectrack-{name}"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert_path), str(key_path)

    def server_context(self, *, require_client: bool) -> ssl.SSLContext:
        """The TLS server side; ``require_client``: only clients with a certificate from
        this CA get through (mutual TLS)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context
