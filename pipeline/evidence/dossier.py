"""A delivery dossier: the signed receipts of one sent message, re-verified, explained.

:func:`write_dossier` takes the message's state (as the worker's lookup returns it) and
a function fetching archived bytes by SHA-256, and writes into a directory::

    01-accettazione-3f2a9c1b0d4e.eml        the signed receipts, byte-exact
    02-avvenuta-consegna-9b1c77e0aa12.eml
    dossier.json                             lifecycle, Sent copy metadata, each receipt's
                                             provenance and its offline re-verification
    README.txt                               what each file proves (Italian and English)

Each receipt is re-verified at writing time with :func:`pipeline.core.examine.examine`
against the trust store given (named in dossier.json by subject and SPKI SHA-256), and
its bytes are checked against the SHA-256 the pipeline recorded. ``pectrack inspect
DIR/*.eml`` re-verifies them again, anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pipeline.contracts.codec import examined_to_dict
from pipeline.core.examine import examine
from pipeline.core.observation import signature_verdict
from pipeline.core.trust import TrustStore

Fetch = Callable[[str], bytes | None]

README = """\
FASCICOLO DI CONSEGNA PEC / PEC DELIVERY DOSSIER
================================================

Messaggio / Message: {msgid}
Casella / Mailbox:   {mailbox}
Generato / Written:  {generated_at} (pectrack)

ITALIANO
--------
Questa cartella contiene le ricevute PEC firmate dai gestori, byte per byte come lette
dalla casella (IMAP), e il file dossier.json.

- *-accettazione-*.eml: la ricevuta di accettazione. Prova che il gestore del mittente
  ha preso in carico il messaggio, alla data e ora indicate nel daticert.xml firmato.
- *-avvenuta-consegna-*.eml: la ricevuta di avvenuta consegna. Prova che il messaggio
  e' stato depositato nella casella del destinatario indicato, alla data e ora firmate
  dal gestore del destinatario (art. 6 DPR 68/2005).
- *-errore-consegna-*.eml, *-non-accettazione-*.eml, *-preavviso-errore-consegna-*.eml:
  mancata consegna, rifiuto o ritardo, con la motivazione firmata dal gestore.
- dossier.json: lo stato di consegna per destinatario, i metadati della copia inviata,
  e per ogni ricevuta l'impronta SHA-256, la posizione IMAP e l'esito della verifica
  della firma (integrita' e attendibilita' alla data di firma rispetto all'ancora di
  fiducia indicata), ripetuta al momento della scrittura di questo fascicolo.

Ogni file .eml si puo' verificare di nuovo, anche senza rete: `pectrack inspect *.eml`,
oppure con qualsiasi strumento S/MIME. L'impronta SHA-256 di ogni file deve coincidere
con quella indicata in dossier.json e negli eventi di pectrack.

ENGLISH
-------
This folder holds the PEC receipts signed by the providers, byte for byte as read from
the mailbox (IMAP), and dossier.json.

- *-accettazione-*.eml: the acceptance receipt. Proves that the sender's provider took
  the message, at the date and time in its signed daticert.xml.
- *-avvenuta-consegna-*.eml: the delivery receipt. Proves that the message was placed in
  the named recipient's mailbox, at the time signed by the recipient's provider.
- *-errore-consegna-*.eml, *-non-accettazione-*.eml, *-preavviso-errore-consegna-*.eml:
  non-delivery, refusal or delay, with the reason signed by the provider.
- dossier.json: the delivery state per recipient, the Sent copy's metadata, and for each
  receipt its SHA-256, its IMAP location and the signature check (integrity, and trust at
  signing time against the trust anchor named), repeated when this dossier was written.

Every .eml file can be verified again, offline: `pectrack inspect *.eml`, or with any
S/MIME tool. Each file's SHA-256 must equal the one in dossier.json and in pectrack's
events.

Files / File:
{files}
"""


@dataclass(frozen=True, slots=True)
class DossierResult:
    files: tuple[str, ...]
    missing: tuple[str, ...]  # SHA-256 of receipts the archive did not return (or altered)
    unverified: tuple[str, ...]  # receipts whose signature does not verify and chain now


def anchors_of(trust: TrustStore) -> list[dict[str, str]]:
    """The trust anchors, named: subject and SHA-256 of the public key (what is pinned)."""
    named = []
    for anchor in trust.anchors:
        spki = anchor.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        named.append(
            {
                "subject": anchor.subject.rfc4514_string(),
                "spki_sha256": hashlib.sha256(spki).hexdigest(),
                "certificate_sha256": anchor.fingerprint(hashes.SHA256()).hex(),
            }
        )
    return named


def write_dossier(
    state: dict[str, Any], fetch: Fetch, trust: TrustStore, out: Path
) -> DossierResult:
    out.mkdir(parents=True, exist_ok=True)
    entries = [e for e in state.get("evidence", []) if isinstance(e, dict)]
    sent = [e for e in entries if e.get("kind") == "sent"]
    receipts = [e for e in entries if e.get("kind") != "sent"]
    files: list[str] = []
    missing: list[str] = []
    unverified: list[str] = []
    described: list[dict[str, Any]] = []
    for number, entry in enumerate(receipts, start=1):
        digest = str(entry.get("sha256", ""))
        raw = fetch(digest)
        item: dict[str, Any] = {
            "evidence": entry,
            "file": None,
            "sha256_matches": False,
            "verification": None,
        }
        if raw is None or hashlib.sha256(raw).hexdigest() != digest:
            missing.append(digest)
            described.append(item)
            continue
        name = f"{number:02d}-{entry.get('kind', 'pec')}-{digest[:12]}.eml"
        (out / name).write_bytes(raw)
        files.append(name)
        examined = examine(raw, trust)
        verdict = signature_verdict(examined).value
        if verdict != "valid-trusted":
            unverified.append(digest)
        item |= {
            "file": name,
            "sha256_matches": True,
            "verification": {"verdict": verdict, **examined_to_dict(examined)},
        }
        described.append(item)
    generated_at = datetime.now(UTC).isoformat()
    dossier = {
        "dossier": "pectrack delivery dossier/1",
        "generated_at": generated_at,
        "key": state.get("key"),
        "mailbox": state.get("mailbox"),
        "msgid": state.get("msgid"),
        "lifecycle": {
            "sender": state.get("sender"),
            "submitted": state.get("submitted"),
            "submitted_at": state.get("submitted_at"),
            "accepted_at": state.get("accepted_at"),
            "final": state.get("final"),
            "recipients": state.get("recipients", []),
            "overdue": state.get("overdue", []),
            "suspects": state.get("suspects", []),
        },
        "sent_copy": sent,
        "receipts": described,
        "verified_with": {"trust_anchors": anchors_of(trust), "verifier": "pipeline.core"},
        "missing": missing,
    }
    (out / "dossier.json").write_text(json.dumps(dossier, indent=2, ensure_ascii=False) + "\n")
    listing = "\n".join(f"  {name}" for name in [*files, "dossier.json"])
    (out / "README.txt").write_text(
        README.format(
            msgid=state.get("msgid"),
            mailbox=state.get("mailbox"),
            generated_at=generated_at,
            files=listing,
        )
    )
    return DossierResult(tuple(files), tuple(missing), tuple(unverified))
