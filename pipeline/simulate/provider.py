"""One simulated PEC provider: it wraps submissions in envelopes and issues receipts.

>>> aruba = Provider("ARUBA PEC S.p.A.", "pec.aruba.it", default_pki().signer(...))
>>> raw = aruba.issue(Notice(Kind.ACCETTAZIONE, original, identificativo=..., at=...))
>>> raw.splitlines()[:4]  # doctest: +SKIP
[b'Date: Fri, 01 Mar 2024 10:00:01 +0100',
 b'From: posta-certificata@pec.aruba.it',
 b'To: mario.rossi@pec.aruba.it',
 b'Subject: ACCETTAZIONE: Fattura 42']

Byte-level helpers at the end make the defective messages a verifier must catch:
:func:`tamper_body`, :func:`strip_signature`, :func:`rewrite_header`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from enum import StrEnum

from pipeline.core.model import ErrorCode, Integrity, Kind, ReceiptVariant, Trust
from pipeline.simulate import render
from pipeline.simulate.ca import Identity, KeyAlgorithm, Pki
from pipeline.simulate.cms import DigestAlgorithm, sign_detached
from pipeline.simulate.mime import TransferEncoding
from pipeline.simulate.render import (
    Daticert,
    HeaderStyle,
    LineEnding,
    OriginalMessage,
    PartName,
    RenderOptions,
)

CET = timezone(timedelta(hours=1))

SUBJECT_PREFIX = {
    Kind.POSTA_CERTIFICATA: "POSTA CERTIFICATA: ",
    Kind.ERRORE: "ANOMALIA MESSAGGIO: ",
    Kind.ACCETTAZIONE: "ACCETTAZIONE: ",
    Kind.NON_ACCETTAZIONE: "AVVISO DI NON ACCETTAZIONE: ",
    Kind.PRESA_IN_CARICO: "PRESA IN CARICO: ",
    Kind.AVVENUTA_CONSEGNA: "CONSEGNA: ",
    Kind.ERRORE_CONSEGNA: "AVVISO DI MANCATA CONSEGNA: ",
    Kind.PREAVVISO_ERRORE_CONSEGNA: "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
    Kind.RILEVAZIONE_VIRUS: "PROBLEMA DI SICUREZZA: ",
}
VIRUS_SUBJECT_PREFIX = {
    Kind.NON_ACCETTAZIONE: "AVVISO DI NON ACCETTAZIONE PER VIRUS: ",
    Kind.ERRORE_CONSEGNA: "AVVISO DI MANCATA CONSEGNA PER VIRUS: ",
}

_NOTICE = {
    Kind.POSTA_CERTIFICATA: 'Il giorno {day} alle ore {time} ({zone}) il messaggio "{subject}" è '
    'stato inviato da "{sender}" indirizzato a:\n{recipients}\nIl messaggio originale è '
    "incluso in allegato.\nIdentificativo messaggio: {ident}",
    Kind.ERRORE: "Il giorno {day} alle ore {time} ({zone}) è stato ricevuto il messaggio "
    '"{subject}" proveniente da "{sender}" che non è un messaggio di posta certificata.\n'
    "Il messaggio originale è incluso in allegato.\nIdentificativo messaggio: {ident}",
    Kind.ACCETTAZIONE: 'Il giorno {day} alle ore {time} ({zone}) il messaggio "{subject}" '
    'proveniente da "{sender}" ed indirizzato a:\n{recipients}\nè stato accettato dal '
    "sistema ed inoltrato.\nIdentificativo messaggio: {ident}",
    Kind.NON_ACCETTAZIONE: 'Il giorno {day} alle ore {time} ({zone}) nel messaggio "{subject}" '
    'proveniente da "{sender}" ed indirizzato a:\n{recipients}\nè stato rilevato un problema '
    "che ne impedisce l'accettazione a causa di {detail}.\nIl messaggio non è stato "
    "accettato.\nIdentificativo messaggio: {ident}",
    Kind.PRESA_IN_CARICO: 'Il giorno {day} alle ore {time} ({zone}) il messaggio "{subject}" '
    'proveniente da "{sender}" ed indirizzato a:\n{recipients}\nè stato accettato dal '
    "sistema.\nIdentificativo messaggio: {ident}",
    Kind.AVVENUTA_CONSEGNA: 'Il giorno {day} alle ore {time} ({zone}) il messaggio "{subject}" '
    'proveniente da "{sender}" ed indirizzato a "{consegna}" è stato consegnato nella '
    "casella di destinazione.\nIdentificativo messaggio: {ident}",
    Kind.ERRORE_CONSEGNA: 'Il giorno {day} alle ore {time} ({zone}) nel messaggio "{subject}" '
    'proveniente da "{sender}" ed indirizzato a "{consegna}" è avvenuto un errore di '
    "consegna: {detail}.\nIl messaggio non è stato consegnato.\n"
    "Identificativo messaggio: {ident}",
    Kind.PREAVVISO_ERRORE_CONSEGNA: "Il giorno {day} alle ore {time} ({zone}) il messaggio "
    '"{subject}" proveniente da "{sender}" ed indirizzato a "{consegna}" non è stato '
    "ancora consegnato: {detail}.\nIdentificativo messaggio: {ident}",
    Kind.RILEVAZIONE_VIRUS: 'Il giorno {day} alle ore {time} ({zone}) nel messaggio "{subject}" '
    'proveniente da "{sender}" è stato rilevato un virus: {detail}.\n'
    "Identificativo messaggio: {ident}",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One message a provider emits about ``original``.

    ``identificativo`` is the transport id the sender's provider gave the submission;
    ``message_id`` is this message's own Message-ID (an envelope's is ``<identificativo>``).
    ``to`` defaults to the original sender (receipts) or recipients (envelopes).
    """

    kind: Kind
    original: OriginalMessage
    identificativo: str
    at: datetime
    message_id: str | None = None
    to: str | None = None
    error: ErrorCode = ErrorCode.NESSUNO
    delivery_recipient: str | None = None
    error_detail: str | None = None
    variant: ReceiptVariant | None = None
    virus: bool = False

    @property
    def effective_variant(self) -> ReceiptVariant | None:
        """``<ricevuta tipo>``: given, else what the sender asked for (envelopes and
        delivery receipts only)."""
        if self.variant is not None:
            return self.variant
        if self.kind in (Kind.POSTA_CERTIFICATA, Kind.AVVENUTA_CONSEGNA):
            return self.original.requested_variant or ReceiptVariant.COMPLETA
        return None


@dataclass(frozen=True, slots=True)
class Provider:
    """A PEC provider (``gestore``): name as in daticert, domain, signing identity, quirks."""

    name: str
    domain: str
    signer: Identity = field(repr=False)
    digest: DigestAlgorithm = DigestAlgorithm.SHA256
    options: RenderOptions = field(default_factory=RenderOptions)
    id_prefix: str = "opec288"
    zone: timezone = CET

    @property
    def address(self) -> str:
        """``posta-certificata@pec.aruba.it``: From of every receipt."""
        return f"posta-certificata@{self.domain}"

    def identificativo(self, at: datetime, seq: int) -> str:
        """``opec288.20240301100000.00042.42.1.10@pec.aruba.it``, unique per ``seq``."""
        return (
            f"{self.id_prefix}.{at.astimezone(self.zone):%Y%m%d%H%M%S}."
            f"{seq:05d}.{seq % 97:02d}.1.{seq % 64}@{self.domain}"
        )

    def with_signer(self, signer: Identity) -> Provider:
        """The same provider signing with another certificate (forgeries, expiry)."""
        return replace(self, signer=signer)

    def issue(
        self,
        notice: Notice,
        *,
        options: RenderOptions | None = None,
        signing_time: datetime | None = None,
        malformed_daticert: bool = False,
        without_original: bool = False,
    ) -> bytes:
        """The raw signed message. ``signing_time`` defaults to ``notice.at``;
        ``without_original`` leaves postacert.eml out even where the kind carries it."""
        opts = options or self.options
        kind = notice.kind
        original = notice.original
        at = notice.at.astimezone(self.zone).replace(microsecond=0)  # daticert has seconds
        variant = notice.effective_variant
        daticert = Daticert(
            kind=kind,
            error=notice.error,
            sender=original.sender,
            recipients=original.recipients,
            subject=original.subject,
            provider=self.name,
            timestamp=at,
            identificativo=notice.identificativo,
            msgid=original.msgid,
            variant=variant,
            delivery_recipient=notice.delivery_recipient,
            error_detail=notice.error_detail,
        )
        attached = (
            None
            if without_original
            else self._attachment(kind, variant, original, notice.identificativo)
        )
        text = _NOTICE[kind].format(
            day=f"{at:%d/%m/%Y}",
            time=f"{at:%H:%M:%S}",
            zone=render.zona(at),
            subject=original.subject,
            sender=original.sender,
            recipients="\n".join(f"{r.address} ({r.type})" for r in original.recipients),
            consegna=notice.delivery_recipient or "",
            detail=notice.error_detail or "",
            ident=notice.identificativo,
        )
        signed = render.signed_part(
            text, daticert, attached, opts, malformed_daticert=malformed_daticert
        )
        signature = sign_detached(
            signed, self.signer, signing_time=signing_time or at, digest=self.digest
        )
        tag = f"{notice.identificativo}:{kind}:{notice.delivery_recipient}:{notice.at}"
        headers = self._headers(notice, at, variant)
        return render.assemble(
            headers, signed, signature, micalg=self.digest.micalg, opts=opts, tag=tag
        )

    @staticmethod
    def _attachment(
        kind: Kind, variant: ReceiptVariant | None, original: OriginalMessage, ident: str
    ) -> bytes | None:
        if kind is Kind.ERRORE:
            return render.render_original(original)
        if kind is Kind.POSTA_CERTIFICATA or (
            kind is Kind.AVVENUTA_CONSEGNA and variant is ReceiptVariant.COMPLETA
        ):
            return render.render_original(original, message_id=f"<{ident}>")
        if kind is Kind.AVVENUTA_CONSEGNA and variant is ReceiptVariant.BREVE:
            return render.render_original(original, message_id=f"<{ident}>", breve=True)
        return None

    def _headers(
        self, notice: Notice, at: datetime, variant: ReceiptVariant | None
    ) -> list[tuple[str, str]]:
        kind = notice.kind
        original = notice.original
        prefix = SUBJECT_PREFIX[kind]
        if notice.virus:
            prefix = VIRUS_SUBJECT_PREFIX.get(kind, prefix)
        message_id = notice.message_id or f"<{notice.identificativo}>"
        headers = [("Date", format_datetime(at))]
        if kind.is_envelope:
            to = notice.to or ", ".join(r.address for r in original.recipients)
            headers += [
                ("From", f'"Per conto di: {original.sender}" <{self.address}>'),
                ("Reply-To", original.sender),
                ("To", to),
            ]
        else:
            headers += [("From", self.address), ("To", notice.to or original.sender)]
        headers += [
            ("Subject", prefix + original.subject),
            ("Message-ID", message_id),
            ("X-Riferimento-Message-ID", original.msgid),
        ]
        if kind.is_envelope:
            headers.append(("X-Trasporto", kind.value))
        else:
            headers.append(("X-Ricevuta", kind.value))
        if kind is Kind.POSTA_CERTIFICATA and variant is not None:
            headers.append(("X-TipoRicevuta", variant.value))
        if kind in (Kind.ERRORE, Kind.RILEVAZIONE_VIRUS, Kind.ERRORE_CONSEGNA):
            headers.append(("X-Mittente", original.sender))
        if notice.virus:
            headers.append(("X-VerificaSicurezza", "errore"))
        return headers


class Fault(StrEnum):
    """What is wrong with a defective message, for the verifier's tests."""

    TAMPERED_BODY = "tampered-body"
    MISSING_SIGNATURE = "missing-signature"
    WRONG_PROVIDER = "wrong-provider"  # valid certificate, but of another provider's domain
    SELF_SIGNED = "self-signed"
    UNTRUSTED_CA = "untrusted-ca"
    EXPIRED_SIGNER = "expired-signer"  # expired at signing time
    HEADER_MISMATCH = "header-daticert-mismatch"  # X-Ricevuta disagrees with daticert
    REPLAYED = "replayed"  # X-Riferimento-Message-ID names another message
    MALFORMED_DATICERT = "malformed-daticert"


FORGERIES = frozenset(
    {
        Fault.WRONG_PROVIDER,
        Fault.SELF_SIGNED,
        Fault.UNTRUSTED_CA,
        Fault.EXPIRED_SIGNER,
        Fault.HEADER_MISMATCH,
        Fault.REPLAYED,
    }
)


def expected_signature(fault: Fault | None) -> tuple[Integrity, Trust]:
    """What a correct verifier reports for a message made defective by ``fault``."""
    if fault is Fault.TAMPERED_BODY:
        return Integrity.INVALID, Trust.TRUSTED  # the certificate chain itself is fine
    if fault is Fault.MISSING_SIGNATURE:
        return Integrity.MISSING, Trust.UNKNOWN
    if fault in (Fault.SELF_SIGNED, Fault.UNTRUSTED_CA, Fault.EXPIRED_SIGNER):
        return Integrity.VALID, Trust.UNTRUSTED
    return Integrity.VALID, Trust.TRUSTED


def forge(
    provider: Provider, notice: Notice, fault: Fault, pki: Pki, *, replay_msgid: str = ""
) -> bytes:
    """``provider.issue(notice)`` made defective in the way ``fault`` names.

    ``replay_msgid`` is the other message a :attr:`Fault.REPLAYED` receipt claims to be about.
    """
    name, domain = provider.name, provider.domain
    if fault is Fault.WRONG_PROVIDER:
        provider = provider.with_signer(pki.signer("Altro Gestore S.p.A.", "pec.altrogestore.it"))
    elif fault is Fault.SELF_SIGNED:
        provider = provider.with_signer(pki.self_signed(name, domain))
    elif fault is Fault.UNTRUSTED_CA:
        provider = provider.with_signer(pki.untrusted(name, domain))
    elif fault is Fault.EXPIRED_SIGNER:
        day = notice.at.astimezone(CET).replace(hour=0, minute=0, second=0, microsecond=0)
        expired = pki.signer(
            name, domain, not_before=day - timedelta(days=1000), not_after=day - timedelta(days=1)
        )
        provider = provider.with_signer(expired)
    raw = provider.issue(notice, malformed_daticert=fault is Fault.MALFORMED_DATICERT)
    if fault is Fault.TAMPERED_BODY:
        return tamper_body(raw)
    if fault is Fault.MISSING_SIGNATURE:
        return strip_signature(raw)
    if fault is Fault.HEADER_MISMATCH:
        claimed = (
            Kind.ERRORE_CONSEGNA
            if notice.kind is Kind.AVVENUTA_CONSEGNA
            else Kind.AVVENUTA_CONSEGNA
        )
        return rewrite_header(raw, "X-Ricevuta", claimed.value)
    if fault is Fault.REPLAYED:
        return rewrite_header(raw, "X-Riferimento-Message-ID", replay_msgid)
    return raw


_BOUNDARY = re.compile(rb'boundary="([^"]+)"')
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def tamper_body(raw: bytes) -> bytes:
    """Flip the case of one letter of the signed text notice: the signature must break,
    daticert.xml stays readable."""
    start = raw.index(b"Content-Type: multipart/mixed")
    notice = raw.index(b"Content-Type: text/plain", start)
    blank = _BLANK_LINE.search(raw, notice)
    assert blank is not None
    i = blank.end()
    while not chr(raw[i]).isalpha():
        i += 1
    return raw[:i] + bytes([raw[i] ^ 0x20]) + raw[i + 1 :]


def strip_signature(raw: bytes) -> bytes:
    """Drop the ``smime.p7s`` part, leaving a ``multipart/signed`` with only content."""
    found = _BOUNDARY.search(raw)
    assert found is not None
    delimiter = b"--" + found.group(1)
    head, signed, _signature, tail = raw.split(delimiter)
    return delimiter.join([head, signed, tail])


def rewrite_header(raw: bytes, name: str, value: str) -> bytes:
    """Replace a top-level header (unsigned, so the signature still verifies)."""
    blank = _BLANK_LINE.search(raw)
    assert blank is not None
    head, body = raw[: blank.start()], raw[blank.start() :]
    newline = b"\r\n" if b"\r\n" in head else b"\n"
    pattern = re.compile(
        rb"^" + re.escape(name.encode()) + rb":[^\n]*\n?(?:[ \t][^\n]*\n?)*", re.I | re.M
    )
    block = head + newline
    match = pattern.search(block)
    assert match is not None, name
    written_name = match.group(0).split(b":", 1)[0]
    line = written_name + b": " + value.encode() + newline
    block = block[: match.start()] + line + block[match.end() :]
    return block[: -len(newline)] + body


def catalogue(pki: Pki) -> tuple[Provider, ...]:
    """Four providers with different habits, keys, digests and layouts."""
    aruba = ("ARUBA PEC S.p.A.", "pec.aruba.it")
    poste = ("Poste Italiane S.p.A.", "postecert.it")
    infocert = ("InfoCert S.p.A.", "legalmail.it")
    namirial = ("Namirial S.p.A.", "sicurezzapostale.it")
    return (
        Provider(*aruba, pki.signer(*aruba), DigestAlgorithm.SHA1, id_prefix="opec288"),
        Provider(
            *poste,
            pki.signer(*poste, KeyAlgorithm.ECDSA),
            DigestAlgorithm.SHA256,
            RenderOptions(
                part_order=(PartName.DATICERT, PartName.TEXT, PartName.ORIGINAL),
                legacy_pkcs7=True,
                header_style=HeaderStyle.LOWER,
                daticert_encoding=TransferEncoding.QUOTED_PRINTABLE,
                doctype=True,
                daticert_charset="ISO-8859-1",
            ),
            id_prefix="POSTECERT",
        ),
        Provider(
            *infocert,
            pki.signer(*infocert),
            DigestAlgorithm.SHA256,
            RenderOptions(
                html=True,
                text_encoding=TransferEncoding.BASE64,
                daticert_encoding=TransferEncoding.SEVEN_BIT,
            ),
            id_prefix="LMAIL",
        ),
        Provider(
            *namirial,
            pki.signer(*namirial, KeyAlgorithm.ECDSA),
            DigestAlgorithm.SHA1,
            RenderOptions(
                part_order=(PartName.TEXT, PartName.ORIGINAL, PartName.DATICERT),
                line_ending=LineEnding.LF,
                fold=False,
            ),
            id_prefix="sp",
        ),
    )
