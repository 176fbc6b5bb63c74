"""The demo's live view: numbers from the processes' ``/metrics``, drawn as a small table.

Pure: text in, text out. :func:`parse_metrics` reads Prometheus exposition text (several
workers' texts add up), :func:`quantile` estimates a percentile from histogram buckets
the way PromQL's ``histogram_quantile`` does, and :func:`render` draws::

    pectrack demo  00:48  simulated 2026-11-27 18:47 UTC (2300x)  300 mailboxes
      provider  submitted     230   stored in IMAP     842   forged/tampered    15
      agent     ingested      841
      workers   state changes     713   first state change after 7.9s
      ┌───────────┬───────────┬────────┬─────────┬───────┬───────┬───────────┐
      │ in flight │ delivered │ failed │ overdue │   p50 │   p99 │ sig. fail │
      ├───────────┼───────────┼────────┼─────────┼───────┼───────┼───────────┤
      │        38 │       247 │     42 │       6 │ 1m03s │ 1m59s │        14 │
      └───────────┴───────────┴────────┴─────────┴───────┴───────┴───────────┘
      p50/p99: acceptance to delivery receipt, in daticert (simulated) time
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Metrics", "Snapshot", "format_duration", "parse_metrics", "quantile", "render"]

Labels = tuple[tuple[str, str], ...]

FAILED_STATES = ("delivery-failed", "virus", "rejected")


@dataclass
class Metrics:
    """Samples summed over every scraped process: name -> labels -> value."""

    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    def total(self, name: str, **match: str) -> float:
        """Sum of ``name`` over the series whose labels include ``match``."""
        return sum(
            value
            for labels, value in self.samples.get(name, {}).items()
            if all((key, wanted) in labels for key, wanted in match.items())
        )

    def buckets(self, name: str, **match: str) -> list[tuple[float, float]]:
        """``(le, cumulative count)`` of histogram ``name`` (``name_bucket`` series), by le."""
        summed: dict[float, float] = defaultdict(float)
        for labels, value in self.samples.get(f"{name}_bucket", {}).items():
            label_map = dict(labels)
            if all(label_map.get(key) == wanted for key, wanted in match.items()):
                summed[float(label_map["le"])] += value
        return sorted(summed.items())


def parse_metrics(texts: Iterable[str]) -> Metrics:
    """Add up the samples of several exposition texts (one per process)."""
    metrics = Metrics()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                series = metrics.samples[sample.name]
                series[labels] = series.get(labels, 0.0) + sample.value
    return metrics


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Linear interpolation inside the bucket holding rank ``q``; None without data.

    >>> quantile(0.5, [(1.0, 0.0), (5.0, 10.0), (math.inf, 10.0)])
    3.0
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # PromQL answers the highest finite bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``1d03h``; ``-`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one refresh shows."""

    elapsed: float
    mailboxes: int
    sim_time: str | None
    speed: float | None
    submitted: int
    stored: int
    faulty: int
    ingested: int
    state_changes: int
    in_flight: int
    delivered: int
    failed: int
    overdue: int
    p50: float | None
    p99: float | None
    signature_failures: int
    first_event_after: float | None
    inbound: int = 0  # certified mail received (pec_inbound_total)
    sdi: int = 0  # SdI notifications and invoices received (pec_sdi_notifications_total)
    # invoices sent that reached each SdI state (pec_sdi_invoice_transitions_total), and
    # notifications that contradicted their invoice's state
    invoice_states: tuple[tuple[str, int], ...] = ()
    invoice_conflicts: int = 0

    @classmethod
    def build(
        cls,
        *,
        elapsed: float,
        mailboxes: int,
        provider: Mapping[str, object],
        agent: Metrics,
        workers: Metrics,
        first_event_after: float | None,
    ) -> Snapshot:
        delivery = workers.buckets("pec_delivery_latency_seconds", phase="delivery")
        changes = "pec_state_changes_total"
        sim_time = provider.get("sim_time")
        speed = provider.get("speed")
        return cls(
            elapsed=elapsed,
            mailboxes=mailboxes,
            sim_time=sim_time if isinstance(sim_time, str) else None,
            speed=float(speed) if isinstance(speed, int | float) else None,
            submitted=_int(provider.get("messages")),
            stored=_int(provider.get("items")),
            faulty=_int(provider.get("faulty")),
            ingested=int(agent.total("pec_ingest_messages_total", outcome="published")),
            state_changes=int(workers.total(changes)),
            in_flight=int(workers.total("pec_messages_inflight")),
            delivered=int(workers.total(changes, to_state="delivered")),
            failed=int(sum(workers.total(changes, to_state=state) for state in FAILED_STATES)),
            overdue=int(workers.total("pec_messages_overdue")),
            p50=quantile(0.5, delivery),
            p99=quantile(0.99, delivery),
            signature_failures=int(workers.total("pec_signature_failures_total")),
            first_event_after=first_event_after,
            inbound=int(workers.total("pec_inbound_total")),
            sdi=int(workers.total("pec_sdi_notifications_total")),
            invoice_states=_invoice_states(workers),
            invoice_conflicts=int(workers.total(INVOICE_TRANSITIONS, outcome="conflict")),
        )


INVOICE_TRANSITIONS = "pec_sdi_invoice_transitions_total"
# The SdI states an invoice sent moves to, in the lifecycle's order; "sent" counts the
# sendings read from the Sent copies (event invio).
INVOICE_STATES = (
    "sent", "delivered", "not-delivered", "rejected", "accepted", "refused", "deadline-passed",
)  # fmt: skip


def _invoice_states(workers: Metrics) -> tuple[tuple[str, int], ...]:
    """How many invoices reached each state (a notification moved them there)."""
    return tuple(
        (
            state,
            int(
                sum(
                    workers.total(INVOICE_TRANSITIONS, to_state=state, outcome=outcome)
                    for outcome in ("advanced", "out-of-order")
                )
            ),
        )
        for state in INVOICE_STATES
    )


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


_COLUMNS = ("in flight", "delivered", "failed", "overdue", "p50", "p99", "sig. fail")


def table(snap: Snapshot) -> list[str]:
    """The compact table, box-drawn, one line per element."""
    cells = (
        str(snap.in_flight),
        str(snap.delivered),
        str(snap.failed),
        str(snap.overdue),
        format_duration(snap.p50),
        format_duration(snap.p99),
        str(snap.signature_failures),
    )
    widths = [max(len(name), len(cell)) + 2 for name, cell in zip(_COLUMNS, cells, strict=True)]

    def rule(left: str, middle: str, right: str) -> str:
        return left + middle.join("─" * width for width in widths) + right

    def row(values: Iterable[str]) -> str:
        return "│" + "│".join(f"{v:>{w - 1}} " for v, w in zip(values, widths, strict=True)) + "│"

    return [
        rule("┌", "┬", "┐"),
        row(_COLUMNS),
        rule("├", "┼", "┤"),
        row(cells),
        rule("└", "┴", "┘"),
    ]


def _invoice_line(snap: Snapshot) -> list[str]:
    """Invoices sent by the SdI state they reached, once there is any."""
    reached = [f"{state} {count}" for state, count in snap.invoice_states if count]
    if not reached and not snap.invoice_conflicts:
        return []
    conflicts = f"   conflicts {snap.invoice_conflicts}" if snap.invoice_conflicts else ""
    return [f"            invoices sent: {'  '.join(reached)}{conflicts}"]


def render(snap: Snapshot) -> list[str]:
    """Every line of one refresh (no trailing newlines)."""
    minutes, seconds = divmod(int(snap.elapsed), 60)
    sim = f"  simulated {snap.sim_time[:16].replace('T', ' ')} UTC" if snap.sim_time else ""
    speed = f" ({snap.speed:.0f}x)" if snap.speed else ""
    first = (
        f"first state change after {snap.first_event_after:.1f}s"
        if snap.first_event_after is not None
        else "waiting for the first state change..."
    )
    return [
        f"pectrack demo  {minutes:02d}:{seconds:02d}{sim}{speed}  {snap.mailboxes} mailboxes",
        f"  provider  submitted {snap.submitted:>7}   stored in IMAP {snap.stored:>7}"
        f"   forged/tampered {snap.faulty:>5}",
        f"  agent     ingested  {snap.ingested:>7}",
        f"  workers   state changes {snap.state_changes:>7}   {first}",
        f"            mail received {snap.inbound:>7}   SdI files {snap.sdi:>7}",
        *_invoice_line(snap),
        *("  " + line for line in table(snap)),
        "  p50/p99: acceptance to delivery receipt, in daticert (simulated) time",
    ]
