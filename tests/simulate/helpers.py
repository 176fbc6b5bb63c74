"""Independent readers for the simulator's output: stdlib ``email``, ElementTree, openssl.

Nothing here uses ``pipeline.core``: the simulator is checked against tools that know
nothing about it.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def canonical(raw: bytes) -> bytes:
    """The CRLF form of a message, whatever line endings it is stored with."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def signed_content(raw: bytes) -> bytes:
    """The bytes between the first boundary line's CRLF and the CRLF before the next
    delimiter (RFC 1847), from the CRLF-canonical message."""
    crlf = canonical(raw)
    found = re.search(rb'boundary="([^"]+)"', crlf)
    assert found is not None
    delimiter = b"\r\n--" + found.group(1)
    start = crlf.index(delimiter) + len(delimiter) + 2
    end = crlf.index(delimiter, start)
    return crlf[start:end]


def signature(raw: bytes) -> bytes:
    """The DER bytes of ``smime.p7s``."""
    parts = parse(raw).get_payload()
    assert isinstance(parts, list)
    payload = parts[1].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def mixed_parts(raw: bytes) -> list[EmailMessage]:
    """The children of the signed ``multipart/mixed``."""
    signed = parse(raw).get_payload(0)
    assert isinstance(signed, EmailMessage)
    assert signed.get_content_type() == "multipart/mixed"
    children = signed.get_payload()
    assert isinstance(children, list)
    return children


def daticert_part(raw: bytes) -> EmailMessage:
    found = [p for p in mixed_parts(raw) if p.get_filename() == "daticert.xml"]
    assert len(found) == 1
    return found[0]


def daticert_bytes(raw: bytes) -> bytes:
    payload = daticert_part(raw).get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def daticert(raw: bytes) -> ET.Element:
    return ET.fromstring(daticert_bytes(raw))


def openssl_verify(
    content: bytes, der: bytes, anchor_pem: bytes, at: datetime, tmp: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``openssl cms -verify`` of a detached signature, as the brief prescribes."""
    assert OPENSSL is not None
    (tmp / "content").write_bytes(content)
    (tmp / "smime.p7s").write_bytes(der)
    (tmp / "anchor.pem").write_bytes(anchor_pem)
    return subprocess.run(
        [
            OPENSSL, "cms", "-verify", "-binary", "-inform", "DER",
            "-content", str(tmp / "content"), "-in", str(tmp / "smime.p7s"),
            "-CAfile", str(tmp / "anchor.pem"), "-purpose", "any",
            "-attime", str(int(at.timestamp())), "-out", str(tmp / "verified"), *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def verify_message(
    raw: bytes, anchor_pem: bytes, at: datetime, tmp: Path
) -> subprocess.CompletedProcess[str]:
    return openssl_verify(signed_content(raw), signature(raw), anchor_pem, at, tmp)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
