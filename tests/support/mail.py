"""Synthetic messages for ingest tests: small, unique, with CRLF line ends like IMAP."""

from __future__ import annotations

__all__ = ["message"]


def message(tag: str, *, body_bytes: int = 200) -> bytes:
    """A plain RFC 5322 message whose Message-ID and body derive from ``tag``."""
    body = (f"body of {tag} " * (body_bytes // (9 + len(tag)) + 1))[:body_bytes]
    return (
        f"From: sender@pec.example.it\r\n"
        f"To: dest@pec.example.it\r\n"
        f"Subject: POSTA CERTIFICATA: {tag}\r\n"
        f"Message-ID: <{tag}@test.pectrack>\r\n"
        f"Date: Thu, 26 Nov 2026 12:00:00 +0100\r\n"
        f"X-Trasporto: posta-certificata\r\n"
        f"\r\n{body}\r\n"
    ).encode()
