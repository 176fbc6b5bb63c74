"""The seeded scenario engine behind :func:`pipeline.simulate.traffic.generate_traffic`.

Users submit certified mail through the providers of the catalogue; the scenario decides
recipients, outcomes, warnings, faults, duplicates and arrival order, and collects every
message that lands in a mailbox with its :class:`~pipeline.simulate.truth.Truth`.

Who emits what, for one certified recipient on another provider (``ps`` the sender's,
``pr`` the recipient's)::

    ps -> sender     accettazione (or non-accettazione), then 12 h / 24 h preavviso
    ps -> recipient  posta-certificata (the envelope)
    pr -> ps         presa-in-carico, when pr takes the envelope in charge
    pr -> sender     avvenuta-consegna, or errore-consegna (no such mailbox, ...)
    pr -> ps         rilevazione-virus, when pr finds a virus in the envelope; then
    ps -> sender     errore-consegna errore="virus" (signed by the SENDER's provider)

Presa-in-carico and rilevazione-virus go provider to provider (``To:`` the sender
provider's ``posta-certificata@`` address), not to a user; a share of them
(:attr:`TrafficMix.provider_notices`) reaches the sender's INBOX all the same, as the
tracker must be ready for: a presa-in-carico changes no delivery state, a
rilevazione-virus sets its recipient to ``virus``. One provider for both ends
exchanges no such notice with itself.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from pipeline.core.model import (
    ErrorCode,
    Kind,
    ReceiptVariant,
    Recipient,
    RecipientType,
)
from pipeline.simulate.ca import Pki
from pipeline.simulate.provider import (
    Fault,
    Notice,
    Provider,
    catalogue,
    forge,
    rewrite_header,
)
from pipeline.simulate.render import Attachment, OriginalMessage, render_original
from pipeline.simulate.truth import (
    INBOX,
    SENT,
    TrafficMix,
    Truth,
    faulty_truth,
    notice_truth,
    plain_truth,
)

_NAMES = [
    "mario.rossi",
    "giulia.bianchi",
    "luca.ferrari",
    "anna.esposito",
    "marco.romano",
    "sara.colombo",
    "paolo.ricci",
    "elena.marino",
    "andrea.greco",
    "chiara.bruno",
    "studio.legale",
    "amministrazione",
]
_EXTERNAL = ("gmail.com", "libero.it", "outlook.it")
_SUBJECTS = (
    "Fattura n. {n}",
    "Diffida ad adempiere - pratica {n}",
    "Trasmissione documenti prot. {n}",
    "Richiesta di accesso agli atti n° {n}",
    "Convocazione assemblea: verbale {n} — urgente",
)


def original_message(
    rng: random.Random,
    *,
    sender: str,
    recipients: tuple[Recipient, ...],
    at: datetime,
    index: int,
    attachment_size: int,
    variant: ReceiptVariant | None = ReceiptVariant.COMPLETA,
) -> OriginalMessage:
    """A plausible submission; the Message-ID looks like a mail client's."""
    subject = rng.choice(_SUBJECTS).format(n=1000 + index)
    attachments = (
        (Attachment(f"documento_{index}.pdf", "application/pdf", rng.randbytes(attachment_size)),)
        if attachment_size > 0
        else ()
    )
    local = sender.split("@", 1)[0]
    return OriginalMessage(
        sender=sender,
        recipients=recipients,
        subject=subject,
        msgid=f"<{at:%Y%m%d%H%M%S}.{index:06d}.{rng.getrandbits(32):08x}@{local}.client>",
        date=at,
        body=f"Gentile destinatario,\nsi trasmette quanto in oggetto ({index}).\n\nSaluti\n",
        attachments=attachments,
        requested_variant=variant,
    )


Pending = tuple[datetime, int, str, str, bytes, Truth]


class Scenario:
    """The mutable playground behind :func:`generate_traffic`: one seeded RNG, one clock."""

    def __init__(self, rng: random.Random, pki: Pki, mix: TrafficMix, start: datetime) -> None:
        self.rng = rng
        self.pki = pki
        self.mix = mix
        self.clock = start
        self.providers = catalogue(pki)
        self.by_domain = {p.domain: p for p in self.providers}
        self.boxes: list[str] = []
        self.pending: list[Pending] = []
        self.receipts: dict[str, list[tuple[bytes, Truth]]] = {}  # per mailbox, for replays
        self.counter = 0

    def populate(self, count: int) -> None:
        for i in range(count):
            name = _NAMES[i % len(_NAMES)] + (str(i // len(_NAMES)) if i >= len(_NAMES) else "")
            self.boxes.append(f"{name}@{self.providers[i % len(self.providers)].domain}")

    def provider_of(self, address: str) -> Provider:
        return self.by_domain[address.split("@", 1)[1]]

    def add(self, arrival: datetime, mailbox: str, folder: str, raw: bytes, truth: Truth) -> None:
        self.counter += 1
        self.pending.append((arrival, self.counter, mailbox, folder, raw, truth))

    def new_id(self, provider: Provider, at: datetime) -> str:
        self.counter += 1
        return f"<{provider.id_prefix}-r.{at:%Y%m%d%H%M%S}.{self.counter:06d}@{provider.domain}>"

    def _recipients(self, sender: str) -> tuple[Recipient, ...]:
        rng, mix = self.rng, self.mix
        count = rng.randint(2, 4) if rng.random() < mix.extra_recipients else 1
        out: list[Recipient] = []
        for n in range(count):
            roll = rng.random()
            if roll < mix.external_recipient:
                address = f"{rng.choice(_NAMES)}{n}@{rng.choice(_EXTERNAL)}"
                out.append(Recipient(address, RecipientType.ESTERNO))
                continue
            others = [b for b in self.boxes if b != sender]
            if others and roll < mix.external_recipient + mix.internal_recipient:
                address = rng.choice(others)
            else:
                domain = rng.choice(self.providers).domain
                address = f"ufficio{rng.randint(1, 999)}@{domain}"
            if all(r.address != address for r in out):
                out.append(Recipient(address, RecipientType.CERTIFICATO))
        return tuple(out)

    def _outcome(self) -> str:
        mix, roll = self.mix, self.rng.random()
        for name in ("failed", "virus", "delayed_12h", "delayed_24h", "late_delivery"):
            roll -= getattr(mix, name)
            if roll < 0:
                return name
        for name in ("final_warning", "pending"):
            roll -= getattr(mix, name)
            if roll < 0:
                return name
        return "delivered"

    def receipt(
        self,
        provider: Provider,
        notice: Notice,
        *,
        warning_hours: int | None = None,
    ) -> tuple[bytes, Truth]:
        return provider.issue(notice), notice_truth(provider, notice, warning_hours=warning_hours)

    def deliver(self, arrival: datetime, mailbox: str, raw: bytes, truth: Truth) -> datetime:
        """Store a receipt in the sender's INBOX, sometimes twice; return its arrival."""
        self.add(arrival, mailbox, INBOX, raw, truth)
        self.receipts.setdefault(mailbox, []).append((raw, truth))
        if self.rng.random() < self.mix.duplicate:
            again = arrival + timedelta(minutes=self.rng.randint(1, 90))
            self.add(again, mailbox, INBOX, raw, replace(truth, duplicate=True))
        return arrival

    def message(self, index: int, attachment_size: int) -> None:
        rng, mix = self.rng, self.mix
        self.clock += timedelta(seconds=rng.randint(20, 900))
        t0 = self.clock
        sender = rng.choice(self.boxes)
        ps = self.provider_of(sender)
        variant = rng.choices(list(ReceiptVariant), weights=mix.variants)[0]
        original = original_message(
            rng,
            sender=sender,
            recipients=self._recipients(sender),
            at=t0,
            index=index,
            attachment_size=attachment_size,
            variant=variant,
        )
        ident = ps.identificativo(t0, index)
        orphan = rng.random() < mix.orphan
        late_acceptance = rng.random() < mix.out_of_order
        first_pending = len(self.pending)
        arrivals: list[datetime] = [t0]
        at = t0 + timedelta(seconds=rng.randint(1, 3))
        if rng.random() < mix.rejected:
            virus = rng.random() < 1 / 3
            detail = (
                "virus rilevato: EICAR-Test-File" if virus else "5.7.1 - mittente non abilitato"
            )
            notice = Notice(
                Kind.NON_ACCETTAZIONE,
                original,
                ident,
                at,
                message_id=self.new_id(ps, at),
                error=ErrorCode.VIRUS if virus else ErrorCode.ALTRO,
                error_detail=detail,
                virus=virus,
            )
            self.deliver(at, sender, *self.receipt(ps, notice))
        else:
            acceptance = self.receipt(
                ps, Notice(Kind.ACCETTAZIONE, original, ident, at, message_id=self.new_id(ps, at))
            )
            taken_by: set[str] = set()  # recipients' providers that sent a presa-in-carico
            for recipient in original.recipients:
                if recipient.type is RecipientType.CERTIFICATO:
                    arrivals += self.recipient(
                        original, ps, ident, recipient.address, at, taken_by=taken_by
                    )
            arrival = max(arrivals) + timedelta(minutes=1) if late_acceptance else at
            self.deliver(arrival, sender, *acceptance)
            if rng.random() < mix.faulty:
                self.faulty(original, ident, max(arrivals) + timedelta(minutes=5))
        if orphan:
            self.mark_orphans(first_pending, sender, original.msgid)
        else:
            sent_at = max(arrivals) + timedelta(minutes=2) if late_acceptance else t0
            self.add(sent_at, sender, SENT, render_original(original), plain_truth(original))
        self.extras(t0)

    def mark_orphans(self, first: int, sender: str, msgid: str) -> None:
        """Flag what reached ``sender`` about ``msgid``: its Sent copy will never arrive."""
        for n in range(first, len(self.pending)):
            arrival, seq, mailbox, folder, raw, truth = self.pending[n]
            if mailbox == sender and truth.msgid == msgid:
                self.pending[n] = (arrival, seq, mailbox, folder, raw, replace(truth, orphan=True))

    def recipient(
        self,
        original: OriginalMessage,
        ps: Provider,
        ident: str,
        address: str,
        accepted: datetime,
        *,
        taken_by: set[str],
    ) -> list[datetime]:
        """Play one certified recipient; return the arrivals of what reached the sender.

        ``taken_by`` holds the recipients' providers that already sent ``ps`` their one
        presa-in-carico for this envelope.
        """
        rng = self.rng
        pr = self.provider_of(address)
        outcome = self._outcome()
        sender = original.sender
        delivered_at = accepted + timedelta(seconds=rng.randint(2, 120))
        # pr takes the envelope in charge between the acceptance and the delivery
        taken_at = accepted + timedelta(seconds=(delivered_at - accepted).seconds // 2)
        arrivals: list[datetime] = []

        def send(
            provider: Provider,
            kind: Kind,
            at: datetime,
            *,
            error: ErrorCode = ErrorCode.NESSUNO,
            error_detail: str | None = None,
            virus: bool = False,
            warning_hours: int | None = None,
            to_provider: bool = False,
        ) -> None:
            if to_provider and rng.random() >= self.mix.provider_notices:
                return  # stays with the sender's provider: no user mailbox sees it
            notice = Notice(
                kind,
                original,
                ident,
                at,
                message_id=self.new_id(provider, at),
                to=ps.address if to_provider else None,
                delivery_recipient=None if kind is Kind.PRESA_IN_CARICO else address,
                error=error,
                error_detail=error_detail,
                virus=virus,
            )
            raw, truth = self.receipt(provider, notice, warning_hours=warning_hours)
            arrival = at + timedelta(seconds=rng.randint(0, 30))
            arrivals.append(self.deliver(arrival, sender, raw, truth))

        remote = pr.domain != ps.domain
        taken = outcome in ("delivered", "late_delivery", "failed")
        if remote and taken and pr.domain not in taken_by:
            taken_by.add(pr.domain)
            send(pr, Kind.PRESA_IN_CARICO, taken_at, to_provider=True)

        if outcome in ("delayed_12h", "delayed_24h", "late_delivery"):
            send(
                ps,
                Kind.PREAVVISO_ERRORE_CONSEGNA,
                accepted + timedelta(hours=12),
                error=ErrorCode.ALTRO,
                warning_hours=12,
                error_detail="4.4.7 - messaggio non consegnato entro le prime 12 ore",
            )
        if outcome in ("delayed_24h", "late_delivery"):
            send(
                ps,
                Kind.PREAVVISO_ERRORE_CONSEGNA,
                accepted + timedelta(hours=24),
                error=ErrorCode.ALTRO,
                warning_hours=24,
                error_detail="4.4.7 - messaggio non consegnato entro 24 ore",
            )
        if outcome == "late_delivery":
            delivered_at = accepted + timedelta(hours=rng.randint(25, 40))
        if outcome in ("delivered", "late_delivery"):
            send(pr, Kind.AVVENUTA_CONSEGNA, delivered_at)
            if address in self.boxes:
                envelope = Notice(Kind.POSTA_CERTIFICATA, original, ident, accepted)
                raw, truth = self.receipt(ps, envelope)
                self.add(delivered_at, address, INBOX, raw, truth)
        elif outcome == "failed":
            quirk = rng.random() < 0.5  # a nonexistent mailbox reported as errore="altro"
            send(
                pr,
                Kind.ERRORE_CONSEGNA,
                delivered_at,
                error=ErrorCode.ALTRO if quirk else ErrorCode.NO_DEST,
                error_detail="5.1.1 - Utente non riconosciuto"
                if not quirk
                else "5.1.1 - user unknown (casella inesistente)",
            )
        elif outcome == "virus":
            if remote:
                send(
                    pr,
                    Kind.RILEVAZIONE_VIRUS,
                    taken_at,
                    error=ErrorCode.VIRUS,
                    virus=True,
                    error_detail="virus rilevato: EICAR-Test-File",
                    to_provider=True,
                )
            send(
                ps,
                Kind.ERRORE_CONSEGNA,
                delivered_at,
                error=ErrorCode.VIRUS,
                virus=True,
                error_detail="5.7.1 - virus rilevato: EICAR-Test-File",
            )
        elif outcome == "final_warning":
            send(
                ps,
                Kind.PREAVVISO_ERRORE_CONSEGNA,
                accepted + timedelta(hours=rng.randint(1, 11)),
                error=ErrorCode.ALTRO,
                error_detail="5.4.1 - Recipient address rejected: Access denied",
            )
        return arrivals

    def faulty(self, original: OriginalMessage, ident: str, arrival: datetime) -> None:
        """An extra defective receipt (tampered or forged) about ``original``."""
        rng = self.rng
        sender = original.sender
        certified = [r.address for r in original.recipients if r.type is RecipientType.CERTIFICATO]
        fault = rng.choice(list(Fault))
        earlier = [rt for rt in self.receipts.get(sender, []) if rt[1].msgid != original.msgid]
        if fault is Fault.REPLAYED and not earlier:
            fault = Fault.TAMPERED_BODY
        if fault is Fault.REPLAYED:
            raw, truth = rng.choice(earlier)
            raw = rewrite_header(raw, "X-Riferimento-Message-ID", original.msgid)
            truth = replace(truth, fault=fault, duplicate=False)
            self.add(arrival, sender, INBOX, raw, truth)
            return
        if not certified:
            return
        address = rng.choice(certified)
        pr = self.provider_of(address)
        kind = Kind.ERRORE_CONSEGNA if fault is Fault.HEADER_MISMATCH else Kind.AVVENUTA_CONSEGNA
        notice = Notice(
            kind,
            original,
            ident,
            arrival - timedelta(seconds=30),
            message_id=self.new_id(pr, arrival),
            delivery_recipient=address,
            error=ErrorCode.NO_DEST if kind is Kind.ERRORE_CONSEGNA else ErrorCode.NESSUNO,
            error_detail="5.1.1 - Utente non riconosciuto"
            if kind is Kind.ERRORE_CONSEGNA
            else None,
        )
        _raw, truth = self.receipt(pr, notice)
        raw = forge(pr, notice, fault, self.pki)
        self.add(arrival, sender, INBOX, raw, faulty_truth(truth, fault))

    def extras(self, at: datetime) -> None:
        """Ordinary mail into a PEC box, plain or wrapped in an anomaly envelope."""
        rng, mix = self.rng, self.mix
        for anomaly, rate in ((False, mix.ordinary_mail), (True, mix.anomaly)):
            if rng.random() >= rate:
                continue
            box = rng.choice(self.boxes)
            index = 900000 + self.counter
            mail = original_message(
                rng,
                sender=f"newsletter@{rng.choice(_EXTERNAL)}",
                recipients=(Recipient(box, RecipientType.CERTIFICATO),),
                at=at + timedelta(seconds=rng.randint(1, 300)),
                index=index,
                attachment_size=0,
                variant=None,
            )
            arrival = mail.date + timedelta(seconds=5)
            if not anomaly:
                self.add(arrival, box, INBOX, render_original(mail), plain_truth(mail))
                continue
            pr = self.provider_of(box)
            notice = Notice(
                Kind.ERRORE, mail, pr.identificativo(mail.date, index), mail.date, to=box
            )
            raw, truth = self.receipt(pr, notice)
            self.add(arrival, box, INBOX, raw, truth)
