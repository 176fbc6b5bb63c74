"""E-invoicing over PEC: the SdI's (Sistema di Interscambio) files, read. Pure, no I/O.

The SdI answers from ``sdiNN@pec.fatturapa.it`` with a PEC message whose original
(postacert.eml) carries one XML file named after the invoice file it is about::

    IT01234567890_00001.xml              the invoice file as sent (NomeFile)
    IT01234567890_00001_RC_001.xml       RicevutaConsegna: delivered to the recipient
    IT01234567890_00001_NS_001.xml       NotificaScarto: refused by the SdI (ListaErrori)
    IT01234567890_00001_MC_001.xml       NotificaMancataConsegna: could not be delivered
    IT01234567890_00001_NE_001.xml       NotificaEsito: EC01 accepted / EC02 refused (PA)
    IT01234567890_00001_DT_001.xml       NotificaDecorrenzaTermini: 15 days, no answer (PA)
    IT01234567890_00001_AT_001.xml       AttestazioneTrasmissioneFattura: transmitted,
                                         delivery impossible
    IT01234567890_00001_MT_001.xml       FileMetadati: comes WITH an invoice received

in the "MessaggiTypes" schema (namespace ``http://www.fatturapa.gov.it/sdi/messaggi/v1.0``,
root prefixed, children unqualified)::

    <types:RicevutaConsegna xmlns:types="http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
                            versione="1.0">
      <IdentificativoSdI>4713</IdentificativoSdI>
      <NomeFile>IT01234567890_00001.xml</NomeFile>
      <Hash>…</Hash>
      <DataOraRicezione>2024-03-01T10:00:00.000+01:00</DataOraRicezione>
      <DataOraConsegna>2024-03-01T10:05:00.000+01:00</DataOraConsegna>
      <Destinatario><Codice>AAAAAA</Codice><Descrizione>…</Descrizione></Destinatario>
      <MessageId>123456</MessageId>
      <ds:Signature …/>                      (XAdES, enveloped)
    </types:RicevutaConsegna>

A received invoice is a FatturaPA document (``p:FatturaElettronica versione="FPR12"``),
plain ``.xml`` or wrapped in a CAdES ``.xml.p7m``. What is checked: the XML is read
hardened (:mod:`pipeline.core.sdi_xml`), the root and namespace must be the SdI's, the
type in the file name must agree with the root element, and the NomeFile the
notification names must be the one its own file name is built on. What is NOT checked:
the SdI's XAdES signature on the notifications (``signed`` says one is present) and
the issuer's CAdES signature of a ``.p7m`` invoice (its content is read, not verified);
the PEC envelope around them is verified as any PEC message is.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from asn1crypto import cms

from pipeline.core.defects import DefectCode
from pipeline.core.model import Defect
from pipeline.core.sdi_xml import Path, XmlDocument, read_xml
from pipeline.core.xades import XadesCheck, check_xades

SDI_NAMESPACES = frozenset(
    {
        "http://www.fatturapa.gov.it/sdi/messaggi/v1.0",
        "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0",
    }
)
FATTURA_NAMESPACES = frozenset(
    {
        "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2",
        "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.0",  # semplificata
        "http://www.fatturapa.gov.it/sdi/fatturapa/v1.1",
    }
)
SDI_DOMAIN = "pec.fatturapa.it"
MAX_NOTIFICATION_BYTES = 512 * 1024
MAX_INVOICE_BYTES = 5 * 1024 * 1024  # the SdI's own limit for one file


class NotificationType(StrEnum):
    """The ``<TYPE>`` of ``<NomeFile>_<TYPE>_<n>.xml``."""

    RC = "RC"  # RicevutaConsegna
    NS = "NS"  # NotificaScarto
    MC = "MC"  # NotificaMancataConsegna
    NE = "NE"  # NotificaEsito
    DT = "DT"  # NotificaDecorrenzaTermini
    AT = "AT"  # AttestazioneTrasmissioneFattura
    MT = "MT"  # FileMetadati (with an invoice received)


ROOT_ELEMENTS = {
    "RicevutaConsegna": NotificationType.RC,
    "NotificaScarto": NotificationType.NS,
    "NotificaMancataConsegna": NotificationType.MC,
    "NotificaEsito": NotificationType.NE,
    "NotificaDecorrenzaTermini": NotificationType.DT,
    "AttestazioneTrasmissioneFattura": NotificationType.AT,
    "FileMetadati": NotificationType.MT,
}

# <IT><VAT id or fiscal code>_<progressive>[_<TYPE>_<n>].xml[.p7m]
_NOTIFICATION_NAME = re.compile(
    r"^(?P<base>[A-Z]{2}[A-Za-z0-9]{2,28}_[A-Za-z0-9]{1,5})_(?P<type>[A-Z]{2})_(?P<n>[A-Za-z0-9]{3})"
    r"\.xml$"
)
_INVOICE_NAME = re.compile(
    r"^(?P<base>[A-Z]{2}[A-Za-z0-9]{2,28}_[A-Za-z0-9]{1,5})\.(?P<ext>xml(?:\.p7m)?)$", re.I
)


@dataclass(frozen=True, slots=True)
class SdiFileName:
    """``IT01234567890_00001_RC_001.xml`` -> base ``IT01234567890_00001``, type RC."""

    name: str
    base: str
    type: NotificationType | None  # None: an invoice file
    signed: bool  # ``.xml.p7m``


def sdi_file_name(name: str) -> SdiFileName | None:
    """The SdI file a name stands for, or ``None`` for any other name (``fattura.pdf``,
    ``IT01234567890_00001_XX_001.xml`` of an unknown type)."""
    name = name.strip()
    if match := _NOTIFICATION_NAME.match(name):
        try:
            kind = NotificationType(match["type"])
        except ValueError:
            return None
        return SdiFileName(name, match["base"], kind, False)
    if match := _INVOICE_NAME.match(name):
        return SdiFileName(name, match["base"], None, match["ext"].lower().endswith(".p7m"))
    return None


@dataclass(frozen=True, slots=True)
class SdiError:
    code: str  # "00404"
    description: str | None


@dataclass(frozen=True, slots=True)
class Notification:
    """One SdI notification (or the FileMetadati of a received invoice)."""

    type: NotificationType
    file_name: str  # the attachment's own name
    nome_file: str | None  # the invoice file it is about
    identificativo_sdi: str | None
    message_id: str | None  # the SdI's MessageId of this notification
    received_at: datetime | None  # DataOraRicezione: when the SdI received the invoice
    delivered_at: datetime | None  # DataOraConsegna (RC)
    esito: str | None  # NE: EsitoCommittente/Esito, EC01 or EC02
    errors: tuple[SdiError, ...]  # NS: ListaErrori
    description: str | None  # Descrizione / Note
    recipient_code: str | None  # Destinatario/Codice, or CodiceDestinatario (MT)
    format: str | None  # MT: Formato (FPR12, FPA12)
    signed: bool  # a ds:Signature is present
    xades: XadesCheck | None  # its verification (pipeline.core.xades); None: not signed
    namespace: str
    defects: tuple[Defect, ...]


_P = {
    "ident": ("IdentificativoSdI",),
    "nome": ("NomeFile",),
    "msg": ("MessageId",),
    "ricezione": ("DataOraRicezione",),
    "consegna": ("DataOraConsegna",),
    "esito": ("EsitoCommittente", "Esito"),
    "descrizione": ("Descrizione",),
    "esito_descrizione": ("EsitoCommittente", "Descrizione"),
    "note": ("Note",),
    "codice": ("Destinatario", "Codice"),
    "codice_mt": ("CodiceDestinatario",),
    "formato": ("Formato",),
    "err_codice": ("Errore", "Codice"),
    "err_descrizione": ("Errore", "Descrizione"),
}
_NOTIFICATION_PATHS: frozenset[Path] = frozenset(
    {p for k, p in _P.items() if not k.startswith("err_")}
    | {("ListaErrori", "Errore", "Codice"), ("ListaErrori", "Errore", "Descrizione")}
    | {("Errore", "Codice"), ("Errore", "Descrizione")}
)


def read_notification(
    file_name: str, data: bytes
) -> tuple[Notification | None, tuple[Defect, ...]]:
    """Read one SdI notification file; ``None`` and defects when it is not one."""
    name = sdi_file_name(file_name)
    if name is None or name.type is None:
        return None, (
            Defect(DefectCode.SDI_FILE_NAME, f"not an SdI notification name: {file_name[:100]}"),
        )
    document, defects = read_xml(
        data, _NOTIFICATION_PATHS, group="Errore", max_bytes=MAX_NOTIFICATION_BYTES
    )
    if document is None:
        return None, defects
    found: list[Defect] = []
    root_type = ROOT_ELEMENTS.get(document.root)
    if root_type is None:
        return None, (Defect(DefectCode.SDI_UNKNOWN_ROOT, f"<{document.root[:60]}>"),)
    if document.namespace not in SDI_NAMESPACES:
        found.append(Defect(DefectCode.SDI_NAMESPACE, f"{document.namespace[:100]!r}"))
    if root_type is not name.type:
        found.append(
            Defect(
                DefectCode.SDI_TYPE_MISMATCH, f"file name says {name.type}, root is {document.root}"
            )
        )
    nome_file = document.first(_P["nome"])
    if nome_file is not None and _base(nome_file) != name.base:
        found.append(
            Defect(DefectCode.SDI_NOMEFILE_MISMATCH, f"{file_name[:80]} is about {nome_file[:80]}")
        )
    errors = tuple(
        SdiError(code, _nth(group.get(("Descrizione",)), 0))
        for group in document.groups
        for code in group.get(("Codice",), [])[:1]
    )
    return (
        Notification(
            type=root_type,
            file_name=file_name,
            nome_file=nome_file,
            identificativo_sdi=document.first(_P["ident"]),
            message_id=document.first(_P["msg"]),
            received_at=_time(document, _P["ricezione"], found),
            delivered_at=_time(document, _P["consegna"], found),
            esito=_esito(document, root_type, found),
            errors=errors,
            description=document.first(_P["esito_descrizione"])
            or document.first(_P["descrizione"])
            or document.first(_P["note"]),
            recipient_code=document.first(_P["codice"]) or document.first(_P["codice_mt"]),
            format=document.first(_P["formato"]),
            signed=document.signed,
            xades=_xades(data, document) if document.signed else None,
            namespace=document.namespace,
            defects=tuple(found),
        ),
        tuple(found),
    )


def _xades(data: bytes, document: XmlDocument) -> XadesCheck:
    namespace, root = document.namespace, document.root
    return check_xades(data, f"{{{namespace}}}{root}" if namespace else root)


def _base(nome_file: str) -> str:
    match = _INVOICE_NAME.match(nome_file.strip())
    return match["base"] if match else nome_file.strip()


def _nth(values: list[str] | None, index: int) -> str | None:
    return values[index] if values and len(values) > index else None


def _esito(document: XmlDocument, root: NotificationType, found: list[Defect]) -> str | None:
    value = document.first(_P["esito"])
    if root is NotificationType.NE and value not in ("EC01", "EC02"):
        found.append(Defect(DefectCode.SDI_ESITO, f"EsitoCommittente/Esito {str(value)[:20]!r}"))
    return value


def _time(document: XmlDocument, path: Path, found: list[Defect]) -> datetime | None:
    """``2024-03-01T10:00:00.000+01:00``; a time without its zone is no evidence of when."""
    value = document.first(path)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        found.append(Defect(DefectCode.SDI_BAD_TIME, f"{path[-1]} {value[:40]!r}"))
        return None
    if parsed.tzinfo is None:
        found.append(Defect(DefectCode.SDI_TIME_WITHOUT_ZONE, f"{path[-1]} {value[:40]!r}"))
        return None
    return parsed


# --- invoices received ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """One ``FatturaElettronicaBody``: a document of the file (a lotto holds several)."""

    number: str | None  # DatiGeneraliDocumento/Numero
    date: str | None  # DatiGeneraliDocumento/Data, YYYY-MM-DD as written
    amount: str | None  # ImportoTotaleDocumento, a decimal as written ("1220.00")
    currency: str | None  # Divisa
    document_type: str | None  # TipoDocumento (TD01 invoice, TD04 credit note, ...)


@dataclass(frozen=True, slots=True)
class Invoice:
    """What an ``invoice-received`` event says about a FatturaPA file."""

    file_name: str
    format: str | None  # versione: FPR12 (B2B), FPA12 (PA), FSM10 (semplificata)
    sender_vat: str | None  # CedentePrestatore IdFiscaleIVA: "IT01234567890"
    sender_name: str | None
    buyer_vat: str | None
    documents: tuple[InvoiceDocument, ...]
    p7m: bool
    defects: tuple[Defect, ...]


_HEADER = ("FatturaElettronicaHeader",)
_SELLER = (*_HEADER, "CedentePrestatore", "DatiAnagrafici")
_BUYER = (*_HEADER, "CessionarioCommittente", "DatiAnagrafici")
_DOC = ("FatturaElettronicaBody", "DatiGenerali", "DatiGeneraliDocumento")
_INVOICE_PATHS: frozenset[Path] = frozenset(
    {
        (*_SELLER, "IdFiscaleIVA", "IdPaese"),
        (*_SELLER, "IdFiscaleIVA", "IdCodice"),
        (*_SELLER, "Anagrafica", "Denominazione"),
        (*_BUYER, "IdFiscaleIVA", "IdPaese"),
        (*_BUYER, "IdFiscaleIVA", "IdCodice"),
        (*_HEADER, "DatiTrasmissione", "FormatoTrasmissione"),
        *((*_DOC, leaf) for leaf in ("Numero", "Data", "ImportoTotaleDocumento", "Divisa")),
        (*_DOC, "TipoDocumento"),
    }
)


def unwrap_p7m(data: bytes) -> bytes | None:
    """The content of a CAdES attached signature (DER, or its base64 text), unverified;
    ``None`` when it is not one."""
    blob = data
    if not data.startswith(b"\x30"):
        try:
            blob = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        info = cms.ContentInfo.load(blob)
        if info["content_type"].native != "signed_data":
            return None
        content = info["content"]["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
        return None
    return content if isinstance(content, bytes) else None


def read_invoice(file_name: str, data: bytes) -> Invoice:
    """Read a FatturaPA file (plain or ``.p7m``); what cannot be read is a defect."""
    p7m = file_name.lower().endswith(".p7m")
    defects: list[Defect] = []
    xml = data
    if p7m:
        unwrapped = unwrap_p7m(data)
        if unwrapped is None:
            return _empty_invoice(
                file_name, p7m, Defect(DefectCode.P7M_UNREADABLE, file_name[:100])
            )
        xml = unwrapped
    document, xml_defects = read_xml(
        xml, _INVOICE_PATHS, group="FatturaElettronicaBody", max_bytes=MAX_INVOICE_BYTES
    )
    if document is None:
        return _empty_invoice(file_name, p7m, *xml_defects)
    if document.root != "FatturaElettronica":
        return _empty_invoice(
            file_name, p7m, Defect(DefectCode.INVOICE_UNKNOWN_ROOT, document.root[:60])
        )
    if document.namespace not in FATTURA_NAMESPACES:
        defects.append(Defect(DefectCode.INVOICE_NAMESPACE, document.namespace[:100]))
    inner = _DOC[1:]
    documents = tuple(
        InvoiceDocument(
            number=_nth(group.get((*inner, "Numero")), 0),
            date=_nth(group.get((*inner, "Data")), 0),
            amount=_amount(_nth(group.get((*inner, "ImportoTotaleDocumento")), 0), defects),
            currency=_nth(group.get((*inner, "Divisa")), 0),
            document_type=_nth(group.get((*inner, "TipoDocumento")), 0),
        )
        for group in document.groups
    )
    if not documents:
        defects.append(Defect(DefectCode.INVOICE_NO_BODY, "no FatturaElettronicaBody"))
    return Invoice(
        file_name=file_name,
        format=document.attributes.get("versione")
        or document.first((*_HEADER, "DatiTrasmissione", "FormatoTrasmissione")),
        sender_vat=_vat(document, _SELLER),
        sender_name=document.first((*_SELLER, "Anagrafica", "Denominazione")),
        buyer_vat=_vat(document, _BUYER),
        documents=documents,
        p7m=p7m,
        defects=tuple(defects),
    )


def _vat(document: XmlDocument, where: Path) -> str | None:
    country = document.first((*where, "IdFiscaleIVA", "IdPaese"))
    code = document.first((*where, "IdFiscaleIVA", "IdCodice"))
    return f"{country or ''}{code}" if code else None


def _amount(value: str | None, defects: list[Defect]) -> str | None:
    """A decimal as written; anything else is a defect and dropped."""
    if value is None:
        return None
    try:
        Decimal(value)
    except InvalidOperation:
        defects.append(Defect(DefectCode.INVOICE_BAD_AMOUNT, value[:40]))
        return None
    return value


def _empty_invoice(file_name: str, p7m: bool, *defects: Defect) -> Invoice:
    return Invoice(file_name, None, None, None, None, (), p7m, tuple(defects))


def is_sdi_address(address: str | None) -> bool:
    """``sdi01@pec.fatturapa.it``: a mailbox of the SdI (the PEC envelope's certified
    sender, which the sender's provider vouches for by signing)."""
    return bool(address) and (address or "").lower().rpartition("@")[2] == SDI_DOMAIN
