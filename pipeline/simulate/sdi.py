"""Simulated e-invoicing traffic over PEC: the SdI's notifications and invoices received.

The files are named and structured like the real ones (FatturaPA technical rules,
"MessaggiTypes" schema): ``<IT><VAT id>_<progressive>_<TYPE>_<n>.xml`` with the root
element in ``http://www.fatturapa.gov.it/sdi/messaggi/v1.0`` and unqualified children;
invoices are FatturaPA 1.2 (``FPR12``/``FPA12``), plain or in a CAdES ``.xml.p7m``. The
SdI sends each in a PEC envelope from ``sdiNN@pec.fatturapa.it``; here a simulated
provider for ``pec.fatturapa.it`` signs it with the test PKI::

    >>> files = notification_files(SdiCase("IT01234567890", "00001", ...), "RC")
    >>> raw = sdi_envelope(provider, "amministrazione@pec.example.it", files, at, seq=1)

With ``sent_copies``, each invoice sent also gets the organisation's own copy of the PEC
message that handed it to the SdI (ordinary MIME in the Sent folder, to
``sdi01@pec.fatturapa.it``, the invoice file attached under its NomeFile): the start of
its lifecycle.

Each notification file (and FileMetadati) carries the SdI's enveloped XAdES-BES
signature (:func:`sign_xades`, signxml, a "Sistema di Interscambio" certificate of the test
PKI), as the real ones do; :mod:`pipeline.core.xades` verifies it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree
from signxml.algorithms import DigestAlgorithm as XmlDigest
from signxml.algorithms import SignatureMethod
from signxml.xades.xades import XAdESSigner

from pipeline.core.model import Kind, Recipient, RecipientType
from pipeline.simulate.ca import Identity, Pki
from pipeline.simulate.provider import Notice, Provider
from pipeline.simulate.render import Attachment, OriginalMessage, render_original
from pipeline.simulate.truth import INBOX, SENT, TrafficItem, notice_truth, plain_truth

MESSAGGI_NS = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
FATTURA_NS = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2"
SDI_PROVIDER = ("SdI PEC (simulated)", "pec.fatturapa.it")
SDI_XADES = ("Sistema di Interscambio (simulated)", "fatturapa.it")  # signs the files
_ROOT = {
    "RC": "RicevutaConsegna",
    "NS": "NotificaScarto",
    "MC": "NotificaMancataConsegna",
    "NE": "NotificaEsito",
    "DT": "NotificaDecorrenzaTermini",
    "AT": "AttestazioneTrasmissioneFattura",
    "MT": "FileMetadati",
}
_SUBJECT = {
    "RC": "Ricevuta di consegna {ident}",
    "NS": "Notifica di scarto {ident}",
    "MC": "Notifica di mancata consegna {ident}",
    "NE": "Notifica di esito {ident}",
    "DT": "Notifica di decorrenza termini {ident}",
    "AT": "Attestazione di avvenuta trasmissione della fattura con impossibilità di "
    "recapito {ident}",
    "MT": "Invio File {ident}",
}
# How each notification type ends a sent invoice, and what precedes it in reality.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "RC": ("RC",),
    "NS": ("NS",),
    "MC": ("MC",),
    "AT": ("MC", "AT"),
    "NE-EC01": ("RC", "NE-EC01"),
    "NE-EC02": ("RC", "NE-EC02"),
    "DT": ("RC", "DT"),
    "MC-RC": ("MC", "RC"),
}
FINAL_STATE = {
    "RC": "delivered",
    "NS": "rejected",
    "MC": "not-delivered",
    "AT": "not-delivered",
    "NE-EC01": "accepted",
    "NE-EC02": "refused",
    "DT": "deadline-passed",
    "MC-RC": "delivered",
}


@dataclass(frozen=True, slots=True)
class SdiCase:
    """One invoice file and the SdI's handling of it."""

    country: str  # "IT"
    vat: str  # "01234567890": the transmitter's id, first part of every file name
    progressive: str  # "0A1B2": 5 alphanumeric characters
    identificativo_sdi: str  # "4713" (the SdI numbers every file it receives)
    received_at: datetime  # DataOraRicezione
    recipient_code: str = "UFE9JK"  # Destinatario/Codice (a PA office code, or 7 chars)

    @property
    def nome_file(self) -> str:
        return f"{self.country}{self.vat}_{self.progressive}.xml"

    def file_name(self, kind: str, n: int = 1) -> str:
        return f"{self.country}{self.vat}_{self.progressive}_{kind}_{n:03d}.xml"


def _time(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def _message_id(case: SdiCase, kind: str) -> str:
    digest = hashlib.sha256(f"{case.identificativo_sdi}:{kind}".encode()).hexdigest()
    return str(int(digest[:12], 16) % 10**12)


def notification_xml(
    case: SdiCase, kind: str, at: datetime, esito: str | None = None, *, nome_file: str = ""
) -> bytes:
    """A notification of ``kind`` (RC, NS, MC, NE, DT, AT, MT) as the SdI writes it;
    ``nome_file`` is the file's name as received (``...xml.p7m`` for a signed invoice)."""
    e = escape
    fields = [
        f"<IdentificativoSdI>{e(case.identificativo_sdi)}</IdentificativoSdI>",
        f"<NomeFile>{e(nome_file or case.nome_file)}</NomeFile>",
    ]
    digest = hashlib.sha256(case.nome_file.encode()).hexdigest()
    if kind in ("RC", "NS", "MC", "AT", "MT"):
        fields.append(f"<Hash>{digest}</Hash>")
    if kind == "MT":
        fields += [
            f"<CodiceDestinatario>{e(case.recipient_code)}</CodiceDestinatario>",
            "<Formato>FPR12</Formato>",
            "<TentativiInvio>1</TentativiInvio>",
        ]
    if kind in ("RC", "NS", "MC", "AT"):
        fields.append(f"<DataOraRicezione>{_time(case.received_at)}</DataOraRicezione>")
    if kind == "RC":
        fields += [
            f"<DataOraConsegna>{_time(at)}</DataOraConsegna>",
            "<Destinatario>",
            f"<Codice>{e(case.recipient_code)}</Codice>",
            "<Descrizione>Ufficio fatturazione</Descrizione>",
            "</Destinatario>",
        ]
    if kind == "NS":
        fields += [
            "<ListaErrori>",
            "<Errore><Codice>00404</Codice><Descrizione>Fattura duplicata</Descrizione></Errore>",
            "<Errore><Codice>00200</Codice><Descrizione>File non conforme al formato"
            "</Descrizione></Errore>",
            "</ListaErrori>",
        ]
    if kind == "MC":
        fields.append("<Descrizione>Casella PEC del destinatario piena</Descrizione>")
    if kind == "AT":
        fields += [
            "<Destinatario>",
            f"<Codice>{e(case.recipient_code)}</Codice>",
            "<Descrizione>Ufficio fatturazione</Descrizione>",
            "</Destinatario>",
        ]
    if kind == "NE":
        fields += [
            "<EsitoCommittente>",
            f"<IdentificativoSdI>{e(case.identificativo_sdi)}</IdentificativoSdI>",
            f"<Esito>{e(esito or 'EC01')}</Esito>",
            "<Descrizione>Importo non corrispondente all'ordine</Descrizione>"
            if esito == "EC02"
            else "",
            "</EsitoCommittente>",
        ]
    if kind == "DT":
        fields.append("<Descrizione>Decorsi i termini per l'esito</Descrizione>")
    fields.append(f"<MessageId>{_message_id(case, kind + (esito or ''))}</MessageId>")
    if kind == "AT":
        fields.append(f"<HashFileOriginale>{digest}</HashFileOriginale>")
    root = _ROOT[kind]
    version = "1.1" if kind == "NE" else "1.0"
    body = "\n  ".join(f for f in fields if f)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<types:{root} xmlns:types="{MESSAGGI_NS}" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" versione="{version}">\n'
        f"  {body}\n</types:{root}>\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class InvoiceBody:
    number: str
    date: str  # YYYY-MM-DD
    amount: str  # "1220.00"


def invoice_xml(
    seller_vat: str, seller_name: str, buyer_vat: str, bodies: tuple[InvoiceBody, ...]
) -> bytes:
    """A FatturaPA 1.2 (FPR12) file; several bodies make a lotto."""
    e = escape
    body_xml = "".join(
        "<FatturaElettronicaBody><DatiGenerali><DatiGeneraliDocumento>"
        "<TipoDocumento>TD01</TipoDocumento><Divisa>EUR</Divisa>"
        f"<Data>{e(b.date)}</Data><Numero>{e(b.number)}</Numero>"
        f"<ImportoTotaleDocumento>{e(b.amount)}</ImportoTotaleDocumento>"
        "</DatiGeneraliDocumento></DatiGenerali>"
        "<DatiBeniServizi><DettaglioLinee><NumeroLinea>1</NumeroLinea>"
        f"<Descrizione>Servizi professionali</Descrizione><PrezzoTotale>{e(b.amount)}"
        "</PrezzoTotale><AliquotaIVA>22.00</AliquotaIVA></DettaglioLinee></DatiBeniServizi>"
        "</FatturaElettronicaBody>"
        for b in bodies
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<p:FatturaElettronica xmlns:p="{FATTURA_NS}" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" versione="FPR12">'
        "<FatturaElettronicaHeader><DatiTrasmissione>"
        f"<IdTrasmittente><IdPaese>IT</IdPaese><IdCodice>{e(seller_vat)}</IdCodice>"
        "</IdTrasmittente><ProgressivoInvio>00001</ProgressivoInvio>"
        "<FormatoTrasmissione>FPR12</FormatoTrasmissione>"
        "<CodiceDestinatario>0000000</CodiceDestinatario></DatiTrasmissione>"
        "<CedentePrestatore><DatiAnagrafici><IdFiscaleIVA><IdPaese>IT</IdPaese>"
        f"<IdCodice>{e(seller_vat)}</IdCodice></IdFiscaleIVA><Anagrafica>"
        f"<Denominazione>{e(seller_name)}</Denominazione></Anagrafica>"
        "<RegimeFiscale>RF01</RegimeFiscale></DatiAnagrafici></CedentePrestatore>"
        "<CessionarioCommittente><DatiAnagrafici><IdFiscaleIVA><IdPaese>IT</IdPaese>"
        f"<IdCodice>{e(buyer_vat)}</IdCodice></IdFiscaleIVA><Anagrafica>"
        "<Denominazione>Cliente S.p.A.</Denominazione></Anagrafica></DatiAnagrafici>"
        "</CessionarioCommittente></FatturaElettronicaHeader>"
        f"{body_xml}</p:FatturaElettronica>\n"
    ).encode()


def sign_attached(content: bytes, signer: Identity) -> bytes:
    """A CAdES-BES-shaped attached SignedData (``.p7m``) over ``content``, DER."""
    cert = asn1_x509.Certificate.load(signer.certificate.public_bytes(serialization.Encoding.DER))
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(content).digest()]}
            ),
        ]
    )
    to_sign = signed_attrs.dump()
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        algorithm = "rsassa_pkcs1v15"
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        algorithm = "sha256_ecdsa"
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": cert.issuer, "serial_number": cert.serial_number}
                ),
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [cms.CertificateChoices(name="certificate", value=cert)],
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def sdi_provider(pki: Pki) -> Provider:
    """The PEC provider that signs the SdI's envelopes (simulated, test PKI)."""
    return Provider(*SDI_PROVIDER, pki.signer(*SDI_PROVIDER), id_prefix="sdi")


def sdi_envelope(  # noqa: PLR0917
    provider: Provider,
    mailbox_address: str,
    files: tuple[Attachment, ...],
    subject: str,
    at: datetime,
    seq: int,
    *,
    sdi_box: int = 1,
) -> bytes:
    """The PEC envelope the SdI sends: from ``sdiNN@pec.fatturapa.it``, the files
    attached to the original message."""
    notice = sdi_notice(provider, mailbox_address, files, subject, at, seq, sdi_box=sdi_box)
    return provider.issue(notice)


def sdi_notice(  # noqa: PLR0917
    provider: Provider,
    mailbox_address: str,
    files: tuple[Attachment, ...],
    subject: str,
    at: datetime,
    seq: int,
    *,
    sdi_box: int = 1,
) -> Notice:
    """The envelope :func:`sdi_envelope` signs, for callers that need its truth too."""
    sender = f"sdi{sdi_box:02d}@{provider.domain}"
    original = OriginalMessage(
        sender=sender,
        recipients=(Recipient(mailbox_address, RecipientType.CERTIFICATO),),
        subject=subject,
        msgid=f"<{at:%Y%m%d%H%M%S}.{seq:08d}@{provider.domain}>",
        date=at,
        body="Il Sistema di Interscambio trasmette il file in allegato.\n",
        attachments=files,
        requested_variant=None,
    )
    return Notice(Kind.POSTA_CERTIFICATA, original, provider.identificativo(at, seq), at)


def sign_xades(data: bytes, signer: Identity) -> bytes:
    """``data`` with the enveloped XAdES-BES signature the SdI puts on its notifications
    (RSA-SHA256, inclusive C14N, the document and the signed properties referenced)."""
    xml_signer = XAdESSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=XmlDigest.SHA256,
        c14n_algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    )
    root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False))
    signed = xml_signer.sign(root, key=signer.key, cert=[signer.certificate, *signer.chain])
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def sdi_signer(pki: Pki) -> Identity:
    """The certificate the SdI signs its notification files with (simulated, test PKI)."""
    return pki.signer(*SDI_XADES)


def notification_files(
    case: SdiCase, step: str, at: datetime, *, xades: Identity | None = None
) -> tuple[Attachment, ...]:
    """``step`` is a notification type, or ``NE-EC01``/``NE-EC02`` for an outcome;
    ``xades``: the SdI's signer (see :func:`sign_xades`), None for an unsigned file."""
    kind, _, esito = step.partition("-")
    data = notification_xml(case, kind, at, esito or None)
    if xades is not None:
        data = sign_xades(data, xades)
    return (Attachment(case.file_name(kind), "application/xml", data),)


def received_invoice_files(
    case: SdiCase,
    invoice: bytes,
    *,
    signer: Identity | None = None,
    xades: Identity | None = None,
) -> tuple[Attachment, ...]:
    """The invoice file (``.xml``, or ``.xml.p7m`` when ``signer`` signs it) and its
    FileMetadati, as the SdI delivers an invoice to its recipient."""
    if signer is not None:
        name = case.nome_file + ".p7m"
        file = Attachment(name, "application/pkcs7-mime", sign_attached(invoice, signer))
    else:
        file = Attachment(case.nome_file, "application/xml", invoice)
    metadata = notification_xml(case, "MT", case.received_at, nome_file=file.filename)
    if xades is not None:
        metadata = sign_xades(metadata, xades)
    meta_name = case.file_name("MT")
    meta = Attachment(meta_name, "application/xml", metadata)
    return (file, meta)


@dataclass(frozen=True, slots=True)
class SdiItem:
    """One envelope of SdI traffic, with what a correct reader says about it; or, for
    kind ``SENT``, the organisation's Sent copy of the message that sent an invoice."""

    mailbox: str  # the mailbox id (its INBOX gets it; its Sent folder for a SENT copy)
    raw: bytes
    kind: str  # RC, NS, MC, NE, DT, AT (a notification), MT (an invoice received), SENT
    nome_file: str
    final_state: str | None  # for a sent invoice: its state after all its notifications
    notice: Notice | None = field(repr=False, compare=False)  # None: a SENT copy
    provider: Provider = field(repr=False, compare=False)
    original: OriginalMessage | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> str:
        return SENT if self.notice is None else INBOX

    def traffic_item(self, order: int) -> TrafficItem:
        """As the rest of the simulated traffic: stored in the mailbox's INBOX (its Sent
        folder for a SENT copy)."""
        if self.notice is None:
            assert self.original is not None
            original = self.original
            return TrafficItem(
                self.mailbox, SENT, self.raw, order, original.date, plain_truth(original)
            )
        truth = notice_truth(self.provider, self.notice)
        return TrafficItem(self.mailbox, INBOX, self.raw, order, self.notice.at, truth)


def sent_copy(case: SdiCase, address: str, invoice: bytes, at: datetime) -> OriginalMessage:
    """The PEC message that hands ``case``'s invoice file to the SdI, as it sits in the
    sender's Sent folder."""
    return OriginalMessage(
        sender=address,
        recipients=(Recipient(f"sdi01@{SDI_PROVIDER[1]}", RecipientType.CERTIFICATO),),
        subject=f"Invio file {case.nome_file}",
        msgid=f"<{at:%Y%m%d%H%M%S}.{case.identificativo_sdi}@erp.example.it>",
        date=at,
        body="Fattura elettronica in allegato.\n",
        attachments=(Attachment(case.nome_file, "application/xml", invoice),),
        requested_variant=None,
    )


def generate_sdi_traffic(
    rng: random.Random,
    pki: Pki,
    mailboxes: tuple[tuple[str, str], ...],  # (mailbox id, its PEC address)
    invoices: int,
    start: datetime,
    *,
    received_share: float = 0.3,
    first: int = 0,
    sent_copies: bool = False,
) -> list[SdiItem]:
    """Invoices sent (each with the notifications of one outcome in :data:`OUTCOMES`,
    after its Sent copy with ``sent_copies``) and invoices received (plain or ``.p7m``),
    spread over ``mailboxes``."""
    provider = sdi_provider(pki)
    xades = sdi_signer(pki)
    company = pki.signer("Fornitore S.r.l.", "fornitore.example.it")
    items: list[SdiItem] = []
    outcomes = sorted(OUTCOMES)
    for index in range(first, first + invoices):
        mailbox, address = mailboxes[index % len(mailboxes)]
        at = start + timedelta(minutes=7 * (index - first))
        vat = f"{rng.randrange(10**10, 10**11):011d}"
        # with its Sent copy at ``at``, the SdI receives the file after it, not before
        received = at + timedelta(minutes=2) if sent_copies else at - timedelta(minutes=3)
        case = SdiCase("IT", vat, f"{index:05X}"[-5:], str(4_000_000 + index), received)
        answers = at + timedelta(minutes=5) if sent_copies else at
        if rng.random() < received_share:
            bodies = (
                InvoiceBody(f"{index}/2024", f"{at:%Y-%m-%d}", f"{rng.randrange(100, 99999)}.00"),
            )
            invoice = invoice_xml(vat, "Fornitore S.r.l.", "09876543210", bodies)
            signer = company if index % 2 else None
            files = received_invoice_files(case, invoice, signer=signer, xades=xades)
            subject = _SUBJECT["MT"].format(ident=case.identificativo_sdi)
            notice = sdi_notice(provider, address, files, subject, at, 10 * index + 9)
            raw = provider.issue(notice)
            name = files[0].filename  # the NomeFile of an invoice received: .xml or .xml.p7m
            items.append(SdiItem(mailbox, raw, "MT", name, None, notice, provider))
            continue
        outcome = outcomes[index % len(outcomes)]
        if sent_copies:
            bodies = (InvoiceBody(f"V{index}/2024", f"{at:%Y-%m-%d}", "1220.00"),)
            invoice = invoice_xml(vat, "Azienda S.p.A.", "09876543210", bodies)
            original = sent_copy(case, address, invoice, at)
            raw = render_original(original)
            final = FINAL_STATE[outcome]
            items.append(
                SdiItem(mailbox, raw, "SENT", case.nome_file, final, None, provider, original)
            )
        for step_index, step in enumerate(OUTCOMES[outcome]):
            step_at = answers + timedelta(hours=step_index)
            kind = step.partition("-")[0]
            files = notification_files(case, step, step_at, xades=xades)
            subject = _SUBJECT[kind].format(ident=case.identificativo_sdi)
            seq = 10 * index + step_index
            notice = sdi_notice(provider, address, files, subject, step_at, seq)
            raw = provider.issue(notice)
            final = FINAL_STATE[outcome]
            items.append(SdiItem(mailbox, raw, kind, case.nome_file, final, notice, provider))
    return items
