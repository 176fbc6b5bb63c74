"""The lifecycle of one invoice sent through the SdI: one transition table.

Theory of operation. An invoice file (``NomeFile``, e.g. ``IT01234567890_00001.xml``) is
``sent`` when the organisation hands it to the SdI: a PEC message to
``sdiNN@pec.fatturapa.it`` with the file attached, whose copy in the Sent folder is the
``INVIO`` event (:mod:`pipeline.core.sdi_sent`; it keeps when and in which PEC message,
and changes no state). The SdI then answers with notifications, each its own PEC message
(see :mod:`pipeline.core.sdi`):

* ``NS`` notifica di scarto: the SdI refused the file (-> rejected; final);
* ``RC`` ricevuta di consegna: delivered to the recipient (-> delivered);
* ``MC`` mancata consegna: could not be delivered, the SdI keeps trying or puts it in
  the recipient's reserved area (-> not-delivered); ``AT`` attestazione di trasmissione
  con impossibilità di recapito says the same, finally (-> not-delivered);
* for the public administration, after delivery: ``NE`` notifica esito with ``EC01``
  (-> accepted) or ``EC02`` (-> refused), or ``DT`` decorrenza termini, no answer in
  15 days (-> deadline-passed).

Notifications arrive out of order (one PEC message each, synced concurrently) and are
re-read. So, as for the PEC delivery lifecycle (:mod:`pipeline.core.lifecycle`):

* every notification is applied once per invoice (its id is remembered): DUPLICATE;
* the Sent copy may be read before or after the SdI's answers: INVIO is ADVANCED on a
  ``sent`` invoice (it is published: the invoice is known from its sending on) and STALE
  on any later state; either way the sending time and PEC Message-ID are kept (the
  earliest sending, should the file have gone out twice);
* states are ranked and the table never moves down, so the final state does not depend
  on the order notifications came in (property-tested). The rank follows the facts:
  ``sent < rejected < not-delivered < delivered < deadline-passed < refused < accepted``.
  An MC then an RC is the SdI's retry succeeding; an outcome (NE, DT) implies delivery,
  so it may arrive before the RC (OUT_OF_ORDER) and the RC after it is STALE;
* contradictions (an NS for a file the SdI also delivered, EC01 and EC02 for one
  invoice, an NE after DT) are CONFLICT: recorded, the higher rank kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from pipeline.core.sdi import Notification, NotificationType


class InvoiceState(StrEnum):
    SENT = "sent"
    REJECTED = "rejected"  # NS
    NOT_DELIVERED = "not-delivered"  # MC, AT
    DELIVERED = "delivered"  # RC
    DEADLINE_PASSED = "deadline-passed"  # DT
    REFUSED = "refused"  # NE EC02
    ACCEPTED = "accepted"  # NE EC01


class SdiEvent(StrEnum):
    """What a notification means for the lifecycle."""

    SCARTO = "scarto"  # NS
    MANCATA_CONSEGNA = "mancata-consegna"  # MC
    ATTESTAZIONE = "attestazione"  # AT
    CONSEGNA = "consegna"  # RC
    DECORRENZA = "decorrenza"  # DT
    RIFIUTO = "rifiuto"  # NE EC02
    ACCETTAZIONE = "accettazione"  # NE EC01
    INVIO = "invio"  # the organisation's Sent copy: the file handed to the SdI


class SdiOutcome(StrEnum):
    ADVANCED = "advanced"
    OUT_OF_ORDER = "out-of-order"  # applied, though an earlier step was not seen
    STALE = "stale"  # already past this step
    CONFLICT = "conflict"  # contradicts what is known; the higher rank kept
    DUPLICATE = "duplicate"  # this very notification was applied before


S, E, Out = InvoiceState, SdiEvent, SdiOutcome
TRANSITIONS: Final[Mapping[tuple[InvoiceState, SdiEvent], tuple[InvoiceState, SdiOutcome]]] = {
    # NS: the SdI refused the file; nothing else can follow for this NomeFile
    (S.SENT, E.SCARTO): (S.REJECTED, Out.ADVANCED),
    (S.REJECTED, E.SCARTO): (S.REJECTED, Out.STALE),
    (S.NOT_DELIVERED, E.SCARTO): (S.NOT_DELIVERED, Out.CONFLICT),
    (S.DELIVERED, E.SCARTO): (S.DELIVERED, Out.CONFLICT),
    (S.DEADLINE_PASSED, E.SCARTO): (S.DEADLINE_PASSED, Out.CONFLICT),
    (S.REFUSED, E.SCARTO): (S.REFUSED, Out.CONFLICT),
    (S.ACCEPTED, E.SCARTO): (S.ACCEPTED, Out.CONFLICT),
    # MC: not delivered (yet): the SdI retries or leaves it in the reserved area
    (S.SENT, E.MANCATA_CONSEGNA): (S.NOT_DELIVERED, Out.ADVANCED),
    (S.REJECTED, E.MANCATA_CONSEGNA): (S.NOT_DELIVERED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.MANCATA_CONSEGNA): (S.NOT_DELIVERED, Out.STALE),
    (S.DELIVERED, E.MANCATA_CONSEGNA): (S.DELIVERED, Out.STALE),
    (S.DEADLINE_PASSED, E.MANCATA_CONSEGNA): (S.DEADLINE_PASSED, Out.STALE),
    (S.REFUSED, E.MANCATA_CONSEGNA): (S.REFUSED, Out.STALE),
    (S.ACCEPTED, E.MANCATA_CONSEGNA): (S.ACCEPTED, Out.STALE),
    # AT: transmitted, delivery impossible (after an MC, for the PA)
    (S.SENT, E.ATTESTAZIONE): (S.NOT_DELIVERED, Out.OUT_OF_ORDER),
    (S.REJECTED, E.ATTESTAZIONE): (S.NOT_DELIVERED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.ATTESTAZIONE): (S.NOT_DELIVERED, Out.ADVANCED),
    (S.DELIVERED, E.ATTESTAZIONE): (S.DELIVERED, Out.CONFLICT),
    (S.DEADLINE_PASSED, E.ATTESTAZIONE): (S.DEADLINE_PASSED, Out.CONFLICT),
    (S.REFUSED, E.ATTESTAZIONE): (S.REFUSED, Out.CONFLICT),
    (S.ACCEPTED, E.ATTESTAZIONE): (S.ACCEPTED, Out.CONFLICT),
    # RC: delivered to the recipient (possibly after an MC: the retry worked)
    (S.SENT, E.CONSEGNA): (S.DELIVERED, Out.ADVANCED),
    (S.REJECTED, E.CONSEGNA): (S.DELIVERED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.CONSEGNA): (S.DELIVERED, Out.ADVANCED),
    (S.DELIVERED, E.CONSEGNA): (S.DELIVERED, Out.STALE),
    (S.DEADLINE_PASSED, E.CONSEGNA): (S.DEADLINE_PASSED, Out.STALE),
    (S.REFUSED, E.CONSEGNA): (S.REFUSED, Out.STALE),
    (S.ACCEPTED, E.CONSEGNA): (S.ACCEPTED, Out.STALE),
    # DT: delivered, and the recipient (PA) did not answer within 15 days
    (S.SENT, E.DECORRENZA): (S.DEADLINE_PASSED, Out.OUT_OF_ORDER),
    (S.REJECTED, E.DECORRENZA): (S.DEADLINE_PASSED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.DECORRENZA): (S.DEADLINE_PASSED, Out.OUT_OF_ORDER),
    (S.DELIVERED, E.DECORRENZA): (S.DEADLINE_PASSED, Out.ADVANCED),
    (S.DEADLINE_PASSED, E.DECORRENZA): (S.DEADLINE_PASSED, Out.STALE),
    (S.REFUSED, E.DECORRENZA): (S.REFUSED, Out.CONFLICT),
    (S.ACCEPTED, E.DECORRENZA): (S.ACCEPTED, Out.CONFLICT),
    # NE EC02: the recipient refused the invoice
    (S.SENT, E.RIFIUTO): (S.REFUSED, Out.OUT_OF_ORDER),
    (S.REJECTED, E.RIFIUTO): (S.REFUSED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.RIFIUTO): (S.REFUSED, Out.OUT_OF_ORDER),
    (S.DELIVERED, E.RIFIUTO): (S.REFUSED, Out.ADVANCED),
    (S.DEADLINE_PASSED, E.RIFIUTO): (S.REFUSED, Out.CONFLICT),
    (S.REFUSED, E.RIFIUTO): (S.REFUSED, Out.STALE),
    (S.ACCEPTED, E.RIFIUTO): (S.ACCEPTED, Out.CONFLICT),
    # NE EC01: the recipient accepted the invoice
    (S.SENT, E.ACCETTAZIONE): (S.ACCEPTED, Out.OUT_OF_ORDER),
    (S.REJECTED, E.ACCETTAZIONE): (S.ACCEPTED, Out.CONFLICT),
    (S.NOT_DELIVERED, E.ACCETTAZIONE): (S.ACCEPTED, Out.OUT_OF_ORDER),
    (S.DELIVERED, E.ACCETTAZIONE): (S.ACCEPTED, Out.ADVANCED),
    (S.DEADLINE_PASSED, E.ACCETTAZIONE): (S.ACCEPTED, Out.CONFLICT),
    (S.REFUSED, E.ACCETTAZIONE): (S.ACCEPTED, Out.CONFLICT),
    (S.ACCEPTED, E.ACCETTAZIONE): (S.ACCEPTED, Out.STALE),
    # INVIO: the Sent copy; it moves nothing, it is the step every state is past
    (S.SENT, E.INVIO): (S.SENT, Out.ADVANCED),
    (S.REJECTED, E.INVIO): (S.REJECTED, Out.STALE),
    (S.NOT_DELIVERED, E.INVIO): (S.NOT_DELIVERED, Out.STALE),
    (S.DELIVERED, E.INVIO): (S.DELIVERED, Out.STALE),
    (S.DEADLINE_PASSED, E.INVIO): (S.DEADLINE_PASSED, Out.STALE),
    (S.REFUSED, E.INVIO): (S.REFUSED, Out.STALE),
    (S.ACCEPTED, E.INVIO): (S.ACCEPTED, Out.STALE),
}
del S, E, Out

FINAL_STATES: Final = frozenset(
    {
        InvoiceState.REJECTED,
        InvoiceState.DEADLINE_PASSED,
        InvoiceState.REFUSED,
        InvoiceState.ACCEPTED,
    }
)


def event_for(notification: Notification) -> SdiEvent | None:
    """The lifecycle event a notification means; ``None`` for FileMetadati (an invoice
    received, not sent) and for an NE whose Esito is neither EC01 nor EC02."""
    kind = notification.type
    if kind is NotificationType.NE:
        return {"EC01": SdiEvent.ACCETTAZIONE, "EC02": SdiEvent.RIFIUTO}.get(
            notification.esito or ""
        )
    return _EVENTS.get(kind)


_EVENTS = {
    NotificationType.NS: SdiEvent.SCARTO,
    NotificationType.MC: SdiEvent.MANCATA_CONSEGNA,
    NotificationType.AT: SdiEvent.ATTESTAZIONE,
    NotificationType.RC: SdiEvent.CONSEGNA,
    NotificationType.DT: SdiEvent.DECORRENZA,
}


@dataclass(frozen=True, slots=True)
class InvoiceTrack:
    """What is known of one sent invoice file."""

    nome_file: str
    identificativo_sdi: str | None
    state: InvoiceState
    notifications: frozenset[str]  # ids of the notifications applied
    changed_at: datetime | None
    sent_at: datetime | None = None  # INVIO: when the PEC message left (the earliest)
    sent_msgid: str | None = None  # and its Message-ID
    seen_at: datetime | None = None  # the newest data time of anything applied to it
    retired: bool = False  # a marker: past its retention (pipeline.core.sdi_retention)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class SdiTransition:
    nome_file: str
    before: InvoiceState
    after: InvoiceState
    event: SdiEvent
    outcome: SdiOutcome
    notification_id: str
    at: datetime | None

    @property
    def changed(self) -> bool:
        return self.before is not self.after


def new_invoice(nome_file: str) -> InvoiceTrack:
    return InvoiceTrack(nome_file, None, InvoiceState.SENT, frozenset(), None)


def apply(
    track: InvoiceTrack,
    event: SdiEvent,
    notification_id: str,
    at: datetime | None = None,
    identificativo_sdi: str | None = None,
    *,
    sent_msgid: str | None = None,
) -> tuple[InvoiceTrack, SdiTransition]:
    """Apply one notification's event. The IdentificativoSdI is kept once known (the
    smallest seen, so the result does not depend on order either); for INVIO, the
    sending ``at`` and ``sent_msgid`` (the earliest sending)."""
    if notification_id in track.notifications:
        transition = SdiTransition(
            track.nome_file, track.state, track.state, event, SdiOutcome.DUPLICATE,
            notification_id, at,
        )  # fmt: skip
        return track, transition
    after, outcome = TRANSITIONS[(track.state, event)]
    ident = track.identificativo_sdi
    if identificativo_sdi:
        ident = identificativo_sdi if ident is None else min(ident, identificativo_sdi)
    sent_at, msgid = track.sent_at, track.sent_msgid
    if event is SdiEvent.INVIO and sent_msgid and _earlier((at, sent_msgid), (sent_at, msgid)):
        sent_at, msgid = at, sent_msgid
    updated = replace(
        track,
        identificativo_sdi=ident,
        state=after,
        notifications=track.notifications | {notification_id},
        changed_at=at if after is not track.state else track.changed_at,
        sent_at=sent_at,
        sent_msgid=msgid,
        seen_at=at if at is not None and (track.seen_at is None or at > track.seen_at)
        else track.seen_at,
    )  # fmt: skip
    transition = SdiTransition(
        track.nome_file, track.state, after, event, outcome, notification_id, at
    )
    return updated, transition


def _earlier(
    candidate: tuple[datetime | None, str], known: tuple[datetime | None, str | None]
) -> bool:
    """Is ``candidate`` the earlier sending (a time before none; ties by Message-ID)?"""
    (at, msgid), (known_at, known_msgid) = candidate, known
    if known_msgid is None:
        return True
    if at is None or known_at is None:
        return known_at is None and (at is not None or msgid < known_msgid)
    return (at, msgid) < (known_at, known_msgid)


def implied_state(event: SdiEvent) -> InvoiceState:
    """The state one notification alone leads a sent invoice to."""
    return TRANSITIONS[(InvoiceState.SENT, event)][0]
