"""Deterministic PEC mailbox traffic with its ground truth.

``generate_traffic(seed=7, messages=100, mailboxes=5, start=...)`` plays users submitting
certified mail through four simulated providers and returns every message that lands in
a mailbox (receipts and envelopes in INBOX, the user's own copy in Sent), in arrival
order, each with the parse a correct tracker must produce (:class:`Truth`).
:func:`expected_states` folds the receipts that are legal evidence into the final
:class:`DeliveryState` of every (sender mailbox, original msgid, recipient).

The bytes are a function of the seed except the signatures (keys are made per process).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pipeline.core.model import (
    DeliveryState,
    ErrorCode,
    Integrity,
    Kind,
    ReceiptVariant,
    Recipient,
    RecipientType,
    Trust,
)
from pipeline.simulate.ca import Pki, default_pki
from pipeline.simulate.provider import (
    CET,
    FORGERIES,
    Fault,
    Notice,
    Provider,
    catalogue,
    expected_signature,
    forge,
    rewrite_header,
)
from pipeline.simulate.render import Attachment, OriginalMessage, render_original

INBOX = "INBOX"
SENT = "Sent"


@dataclass(frozen=True, slots=True)
class Truth:
    """The parse and verification a correct tracker produces for one message.

    Fields mirror :class:`pipeline.core.model.PecMessage`; for ``not-pec`` mail ``msgid``
    is the message's own Message-ID. ``warning_hours`` is 12 or 24 for a
    preavviso-errore-consegna.
    """

    kind: Kind
    msgid: str | None
    identificativo: str | None
    provider: str | None
    sender: str | None
    recipients: tuple[Recipient, ...]
    delivery_recipient: str | None
    timestamp: datetime | None
    variant: ReceiptVariant | None
    error: ErrorCode | None
    error_detail: str | None
    virus: bool
    message_id: str | None
    integrity: Integrity
    trust: Trust
    fault: Fault | None = None
    duplicate: bool = False
    orphan: bool = False
    warning_hours: int | None = None

    @property
    def tampered(self) -> bool:
        return self.fault in (Fault.TAMPERED_BODY, Fault.MISSING_SIGNATURE)

    @property
    def forged(self) -> bool:
        return self.fault in FORGERIES

    @property
    def counts_as_evidence(self) -> bool:
        """Valid, trusted, consistent receipts only: the rest are reported, never counted."""
        return (
            self.kind.is_receipt
            and self.integrity is Integrity.VALID
            and self.trust is Trust.TRUSTED
            and self.fault is None
        )


@dataclass(frozen=True, slots=True)
class TrafficItem:
    """One message as it lands: ``mailbox`` is the box it is stored in (the sender's for
    receipts and Sent copies, the recipient's for envelopes and ordinary mail)."""

    mailbox: str
    folder: str
    raw: bytes = field(repr=False)
    arrival_order: int
    arrival_time: datetime
    truth: Truth

    @property
    def filename(self) -> str:
        """``000042-avvenuta-consegna.eml``."""
        return f"{self.arrival_order:06d}-{self.truth.kind}.eml"


@dataclass(frozen=True, slots=True)
class TrafficMix:
    """Proportions of each situation; per message unless said per recipient."""

    external_recipient: float = 0.15  # per recipient: an ordinary (esterno) mailbox
    extra_recipients: float = 0.35  # a message has 2-4 recipients
    internal_recipient: float = 0.15  # per recipient: another simulated mailbox
    rejected: float = 0.04  # non-accettazione (a third of them for a virus)
    failed: float = 0.06  # per recipient: errore-consegna (half reported as errore="altro")
    virus: float = 0.02  # per recipient: errore-consegna errore="virus"
    delayed_12h: float = 0.03  # per recipient: one warning, nothing else yet
    delayed_24h: float = 0.02  # per recipient: two warnings, nothing else yet
    late_delivery: float = 0.03  # per recipient: two warnings, then delivered
    final_warning: float = 0.02  # per recipient: a "5.4.1" warning that is final
    pending: float = 0.04  # per recipient: accepted, no receipt yet
    duplicate: float = 0.03  # per receipt: delivered twice
    out_of_order: float = 0.08  # acceptance (and the Sent copy) arrive after the receipts
    orphan: float = 0.03  # the Sent copy never arrives
    faulty: float = 0.04  # an extra tampered or forged receipt
    ordinary_mail: float = 0.03  # a non-PEC mail into the INBOX
    anomaly: float = 0.02  # a non-PEC mail wrapped in an "errore" envelope
    variants: tuple[float, float, float] = (0.7, 0.15, 0.15)  # completa, breve, sintetica


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


def notice_truth(provider: Provider, notice: Notice, *, warning_hours: int | None = None) -> Truth:
    """The truth of ``provider.issue(notice)``."""
    original = notice.original
    return Truth(
        kind=notice.kind,
        msgid=original.msgid,
        identificativo=notice.identificativo,
        provider=provider.name,
        sender=original.sender,
        recipients=original.recipients,
        delivery_recipient=notice.delivery_recipient,
        timestamp=notice.at.astimezone(provider.zone).replace(microsecond=0),
        variant=notice.effective_variant,
        error=notice.error,
        error_detail=notice.error_detail,
        virus=notice.virus,
        message_id=notice.message_id or f"<{notice.identificativo}>",
        integrity=Integrity.VALID,
        trust=Trust.TRUSTED,
        warning_hours=warning_hours,
    )


def plain_truth(mail: OriginalMessage) -> Truth:
    """The truth of ordinary mail (a Sent copy, a newsletter): ``not-pec``, no signature."""
    return Truth(
        kind=Kind.NOT_PEC,
        msgid=mail.msgid,
        identificativo=None,
        provider=None,
        sender=mail.sender,
        recipients=mail.recipients,
        delivery_recipient=None,
        timestamp=mail.date,
        variant=None,
        error=None,
        error_detail=None,
        virus=False,
        message_id=mail.msgid,
        integrity=Integrity.MISSING,
        trust=Trust.UNKNOWN,
    )


def faulty_truth(truth: Truth, fault: Fault) -> Truth:
    """The truth of a message ``forge(..., fault)`` made from one whose truth is ``truth``."""
    integrity, trust = expected_signature(fault)
    truth = replace(truth, fault=fault, integrity=integrity, trust=trust)
    if fault is not Fault.MALFORMED_DATICERT:
        return truth
    return replace(  # what can be known without daticert: kind, msgid, Message-ID
        truth,
        identificativo=None,
        provider=None,
        sender=None,
        recipients=(),
        delivery_recipient=None,
        timestamp=None,
        variant=None,
        error=None,
        error_detail=None,
    )


def generate_traffic(
    seed: int,
    messages: int,
    mailboxes: int,
    start: datetime,
    *,
    mix: TrafficMix | None = None,
    attachment_size: int = 2048,
    pki: Pki | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[TrafficItem]:
    """Every item in arrival order (``arrival_order`` 0, 1, ...). ``start`` is naive CET or
    aware; ``attachment_size`` bytes of attachment per message (0 for none);
    ``progress(done)`` is called after each message."""
    if messages < 0 or mailboxes < 1:
        raise ValueError("messages must be >= 0 and mailboxes >= 1")
    start = start if start.tzinfo else start.replace(tzinfo=CET)
    start = start.replace(microsecond=0)
    scenario = _Scenario(
        random.Random(seed),  # noqa: S311 -- simulation, not crypto
        pki or default_pki(),
        mix or TrafficMix(),
        start,
    )
    scenario.populate(mailboxes)
    for index in range(messages):
        scenario.message(index, attachment_size)
        if progress is not None:
            progress(index + 1)
    pending = sorted(scenario.pending, key=lambda p: (p[0], p[1]))
    return [
        TrafficItem(mailbox, folder, raw, order, at, truth)
        for order, (at, _seq, mailbox, folder, raw, truth) in enumerate(pending)
    ]


_RANK = {
    DeliveryState.SUBMITTED: 0,
    DeliveryState.ACCEPTED: 1,
    DeliveryState.DELAYED_12H: 2,
    DeliveryState.DELAYED_24H: 3,
    DeliveryState.REJECTED: 4,
    DeliveryState.DELIVERED: 4,
    DeliveryState.DELIVERY_FAILED: 4,
    DeliveryState.VIRUS: 4,
}


def _receipt_state(truth: Truth) -> DeliveryState | None:
    if truth.kind is Kind.ACCETTAZIONE:
        return DeliveryState.ACCEPTED
    if truth.kind is Kind.NON_ACCETTAZIONE:
        return DeliveryState.REJECTED
    if truth.kind is Kind.AVVENUTA_CONSEGNA:
        return DeliveryState.DELIVERED
    if truth.kind is Kind.RILEVAZIONE_VIRUS:
        return DeliveryState.VIRUS
    if truth.kind is Kind.ERRORE_CONSEGNA:
        return (
            DeliveryState.VIRUS if truth.error is ErrorCode.VIRUS else DeliveryState.DELIVERY_FAILED
        )
    if truth.kind is Kind.PREAVVISO_ERRORE_CONSEGNA:
        if (truth.error_detail or "").startswith("5.4.1"):
            return DeliveryState.DELIVERY_FAILED  # the provider quirk: a final failure
        return DeliveryState.DELAYED_24H if truth.warning_hours == 24 else DeliveryState.DELAYED_12H
    return None


def expected_states(
    items: Iterable[TrafficItem],
) -> dict[tuple[str, str], dict[str, DeliveryState]]:
    """(sender mailbox, original msgid) -> recipient -> final state, from evidence only.

    A state moves only forward (accepted < 12 h < 24 h warning < final) and the first
    final receipt wins, so arrival order and duplicates do not matter.
    """
    states: dict[tuple[str, str], dict[str, DeliveryState]] = {}
    for item in items:
        truth = item.truth
        is_sent_copy = item.folder == SENT and truth.kind is Kind.NOT_PEC
        if truth.msgid is None or not (is_sent_copy or truth.counts_as_evidence):
            continue
        per_recipient = states.setdefault((item.mailbox, truth.msgid), {})
        for recipient in truth.recipients:
            per_recipient.setdefault(recipient.address, DeliveryState.SUBMITTED)
        new = _receipt_state(truth)
        if new is None:
            continue
        targets = (
            [truth.delivery_recipient]
            if truth.delivery_recipient is not None
            else [r.address for r in truth.recipients]
        )
        for address in targets:
            current = per_recipient.get(address, DeliveryState.SUBMITTED)
            if _RANK[new] > _RANK[current]:
                per_recipient[address] = new
    return states


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


class _Scenario:
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
            for recipient in original.recipients:
                if recipient.type is RecipientType.CERTIFICATO:
                    arrivals += self.recipient(original, ps, ident, recipient.address, at)
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
        self, original: OriginalMessage, ps: Provider, ident: str, address: str, accepted: datetime
    ) -> list[datetime]:
        """Play one certified recipient; return the arrivals of what reached the sender."""
        rng = self.rng
        pr = self.provider_of(address)
        outcome = self._outcome()
        sender = original.sender
        delivered_at = accepted + timedelta(seconds=rng.randint(2, 120))
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
        ) -> None:
            notice = Notice(
                kind,
                original,
                ident,
                at,
                message_id=self.new_id(provider, at),
                delivery_recipient=address,
                error=error,
                error_detail=error_detail,
                virus=virus,
            )
            raw, truth = self.receipt(provider, notice, warning_hours=warning_hours)
            arrival = at + timedelta(seconds=rng.randint(0, 30))
            arrivals.append(self.deliver(arrival, sender, raw, truth))

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
            send(
                pr,
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
