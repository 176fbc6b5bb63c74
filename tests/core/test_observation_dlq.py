"""Unreadable mail is a dead letter with its reason; readable ordinary mail stays ignored."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.examine import examine
from pipeline.core.model import Kind
from pipeline.core.observation import (
    NOT_A_MESSAGE,
    Ignored,
    Routed,
    Submission,
    SuspectReceipt,
    Unroutable,
    observe_message,
)
from pipeline.core.parse import Limits
from pipeline.core.trust import TrustStore
from tests.factories import make_ordinary_mail, make_receipt, make_sent_copy

BOX = "studio-rossi"
NO_ANCHORS = TrustStore(())  # ordinary mail carries no signature to check
DATE = b"Date: Fri, 01 Mar 2024 10:00:00 +0100\r\n"
NO_BOUNDARY = (
    b"From: fornitore@example.com\r\n" + DATE + b"Subject: Fattura\r\n"
    b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nciao\r\n--x--\r\n"
)


def outcome(
    raw: bytes, trust: TrustStore, folder: str = "INBOX", limits: Limits | None = None
) -> Routed:
    examined = examine(raw, trust, limits or Limits())
    return observe_message(examined, BOX, sent_copy=folder != "INBOX")


def test_multipart_without_its_boundary_is_a_dead_letter(trust: TrustStore) -> None:
    """A multipart body with no boundary parameter: reason mime-malformed, with detail."""
    assert outcome(NO_BOUNDARY, trust) == Unroutable(
        "mime-malformed", "multipart body without its boundary"
    )


def test_boundary_that_never_occurs_is_a_dead_letter(trust: TrustStore) -> None:
    """A boundary named in Content-Type but absent from the body: mime-malformed."""
    raw = NO_BOUNDARY.replace(b"multipart/mixed", b'multipart/mixed; boundary="other"')
    result = outcome(raw, trust)
    assert isinstance(result, Unroutable)
    assert result.reason == "mime-malformed"


def test_oversized_header_section_is_a_dead_letter(trust: TrustStore) -> None:
    """A header block over max_header_bytes: reason headers-too-large."""
    raw = b"From: a@example.com\r\n" + DATE + b"X-Pad: " + b"a" * 300_000 + b"\r\n\r\nbody\r\n"
    result = outcome(raw, trust)
    assert isinstance(result, Unroutable)
    assert result.reason == "headers-too-large"
    assert "262144" in result.detail


def test_message_over_the_size_cap_is_a_dead_letter(trust: TrustStore) -> None:
    """Ordinary mail over max_message_bytes was never read: reason message-too-large."""
    raw = make_ordinary_mail().raw
    result = outcome(raw, trust, limits=Limits(max_message_bytes=len(raw) - 1))
    assert result == Unroutable("message-too-large", f"{len(raw)} bytes")


def test_bytes_that_are_not_mail_are_a_dead_letter(trust: TrustStore) -> None:
    """No header field any mail has (binary, empty, plain text): reason not-rfc5322."""
    for raw in (b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"hello\nthis is not mail\n"):
        result = outcome(raw, trust)
        assert isinstance(result, Unroutable), raw
        assert result.reason == NOT_A_MESSAGE


def test_ordinary_mail_stays_ignored(trust: TrustStore) -> None:
    """Readable non-PEC mail in INBOX is dropped as before, with no dead letter."""
    assert outcome(make_ordinary_mail().raw, trust) == Ignored("ordinary-mail")
    assert outcome(b"Subject: promemoria\r\n\r\nsolo un oggetto\r\n", trust) == Ignored(
        "ordinary-mail"
    )


def test_pgp_signed_mail_stays_ignored(trust: TrustStore) -> None:
    """multipart/signed without smime.p7s (PGP/MIME) is readable mail, not a dead letter."""
    raw = (
        b"From: a@example.com\r\n" + DATE + b'Content-Type: multipart/signed; protocol="applica'
        b'tion/pgp-signature"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nciao\r\n'
        b"--b\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--b--\r\n"
    )
    assert outcome(raw, trust) == Ignored("ordinary-mail")


def test_unreadable_envelope_is_a_dead_letter(trust: TrustStore) -> None:
    """An incoming envelope is ignored only when it could be read."""
    raw = b"X-Trasporto: posta-certificata\r\n" + DATE + b"Content-Type: multipart/signed\r\n\r\nx"
    assert examine(raw, trust).message.kind is Kind.POSTA_CERTIFICATA
    result = outcome(raw, trust)
    assert isinstance(result, Unroutable)
    assert result.reason == "mime-malformed"


def test_unreadable_receipt_is_still_reported_as_suspect(trust: TrustStore) -> None:
    """A receipt with broken MIME but a Message-ID stays a suspect (reported, not counted)."""
    raw = (
        b"X-Ricevuta: avvenuta-consegna\r\nX-Riferimento-Message-ID: <m.1@example.com>\r\n"
        + DATE
        + b"Content-Type: multipart/signed; boundary=zz\r\n\r\nno parts\r\n"
    )
    assert isinstance(outcome(raw, trust), SuspectReceipt)


def test_sent_copy_with_broken_body_still_registers(trust: TrustStore) -> None:
    """In a Sent folder the submission is read from the headers, which were read."""
    raw = NO_BOUNDARY.replace(b"Subject:", b"Message-ID: <s.1@example.com>\r\nSubject:")
    assert isinstance(outcome(raw, trust, folder="Posta inviata"), Submission)


def test_receipts_and_sent_copies_are_unchanged(trust: TrustStore) -> None:
    """Well-formed PEC and Sent copies route as before."""
    assert not isinstance(outcome(make_receipt(Kind.AVVENUTA_CONSEGNA), trust), Unroutable)
    assert isinstance(outcome(make_sent_copy().raw, trust, folder="Sent"), Submission)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=80)


@given(
    subject=_TEXT,
    body=_TEXT,
    attachments=st.lists(st.binary(max_size=200), max_size=3),
    sender=st.sampled_from(["a@example.com", "Mario Rossi <mario@example.it>"]),
)
def test_well_formed_ordinary_mail_is_ignored(
    subject: str, body: str, attachments: list[bytes], sender: str
) -> None:
    """Any mail the stdlib writes (text or multipart, any subject) in INBOX is ignored."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "casella@pec.example.it"
    mail["Subject"] = subject
    mail.set_content(body)
    for index, data in enumerate(attachments):
        mail.add_attachment(data, maintype="application", subtype="pdf", filename=f"a{index}.pdf")
    result = observe_message(examine(mail.as_bytes(), NO_ANCHORS), BOX, sent_copy=False)
    assert result == Ignored("ordinary-mail")
