"""The live view: Prometheus text to numbers, numbers to a table."""

from __future__ import annotations

import math

from pipeline.dev.demo.view import (
    Metrics,
    Snapshot,
    format_duration,
    parse_metrics,
    quantile,
    render,
)

WORKER_A = """\
# TYPE pec_state_changes_total counter
pec_state_changes_total{to_state="delivered"} 7.0
pec_state_changes_total{to_state="delivery-failed"} 2.0
pec_state_changes_total{to_state="virus"} 1.0
# TYPE pec_messages_inflight gauge
pec_messages_inflight 3.0
# TYPE pec_messages_overdue gauge
pec_messages_overdue 1.0
# TYPE pec_signature_failures_total counter
pec_signature_failures_total{reason="signature-invalid"} 2.0
# TYPE pec_delivery_latency_seconds histogram
pec_delivery_latency_seconds_bucket{le="30.0",phase="delivery"} 2.0
pec_delivery_latency_seconds_bucket{le="60.0",phase="delivery"} 4.0
pec_delivery_latency_seconds_bucket{le="+Inf",phase="delivery"} 4.0
pec_delivery_latency_seconds_bucket{le="30.0",phase="acceptance"} 9.0
pec_delivery_latency_seconds_bucket{le="60.0",phase="acceptance"} 9.0
pec_delivery_latency_seconds_bucket{le="+Inf",phase="acceptance"} 9.0
"""
WORKER_B = """\
# TYPE pec_state_changes_total counter
pec_state_changes_total{to_state="delivered"} 5.0
pec_state_changes_total{to_state="rejected"} 1.0
# TYPE pec_messages_inflight gauge
pec_messages_inflight 2.0
# TYPE pec_signature_failures_total counter
pec_signature_failures_total{reason="untrusted-signer"} 1.0
# TYPE pec_delivery_latency_seconds histogram
pec_delivery_latency_seconds_bucket{le="30.0",phase="delivery"} 0.0
pec_delivery_latency_seconds_bucket{le="60.0",phase="delivery"} 4.0
pec_delivery_latency_seconds_bucket{le="+Inf",phase="delivery"} 4.0
"""
AGENT = """\
# TYPE pec_ingest_messages_total counter
pec_ingest_messages_total{outcome="published"} 40.0
pec_ingest_messages_total{outcome="dead_letter"} 1.0
"""


def snapshot(**provider: object) -> Snapshot:
    return Snapshot.build(
        elapsed=75.0,
        mailboxes=300,
        provider=provider,
        agent=parse_metrics([AGENT]),
        workers=parse_metrics([WORKER_A, WORKER_B]),
        first_event_after=8.25,
    )


def test_workers_metrics_add_up() -> None:
    """Counters and gauges of two workers are summed; label filters pick series."""
    snap = snapshot(messages=12, items=50, faulty=2, sim_time="2026-11-27T08:30:00+00:00")
    assert (snap.delivered, snap.failed, snap.in_flight, snap.overdue) == (12, 4, 5, 1)
    assert snap.signature_failures == 3
    assert snap.state_changes == 16
    assert snap.ingested == 40
    assert (snap.submitted, snap.stored, snap.faulty) == (12, 50, 2)


def test_latency_quantiles_use_the_delivery_phase_of_all_workers() -> None:
    """Buckets of both workers merge (2, 8, 8 by le); p50 interpolates inside 30..60 s."""
    snap = snapshot()
    assert snap.p50 is not None
    assert math.isclose(snap.p50, 30.0 + 30.0 * (4.0 - 2.0) / (8.0 - 2.0))
    assert snap.p99 is not None
    assert 59.0 < snap.p99 <= 60.0


def test_quantile_without_observations_is_unknown() -> None:
    """No samples, or only zero counts, give None (shown as '-'), not NaN."""
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert format_duration(None) == "-"


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    """As PromQL: a rank above every finite bucket answers the largest finite bound."""
    assert quantile(0.99, [(10.0, 1.0), (math.inf, 10.0)]) == 10.0


def test_durations_read_at_a_glance() -> None:
    """Seconds, minutes, hours and days at PEC scales."""
    assert [format_duration(s) for s in (4.4, 65, 7_800, 93_600)] == [
        "4s",
        "1m05s",
        "2h10m",
        "1d02h",
    ]


def test_render_shows_progress_and_the_table() -> None:
    """The block names the first state change time and has one row of values."""
    lines = render(snapshot(messages=12, items=50, sim_time="2026-11-27T08:30:00+00:00"))
    text = "\n".join(lines)
    assert "first state change after 8.2s" in text or "first state change after 8.3s" in text
    assert "simulated 2026-11-27 08:30 UTC" in text
    header = next(line for line in lines if "delivered" in line and "in flight" in line)
    values = lines[lines.index(header) + 2].strip().strip("│").split("│")
    assert [v.strip() for v in values] == ["5", "12", "4", "1", "40s", "1m00s", "3"]


def test_empty_metrics_render_without_numbers() -> None:
    """Before any process answers, the view shows zeros and '-' rather than failing."""
    snap = Snapshot.build(
        elapsed=1.0,
        mailboxes=5,
        provider={},
        agent=Metrics(),
        workers=parse_metrics([""]),
        first_event_after=None,
    )
    text = "\n".join(render(snap))
    assert "waiting for the first state change" in text
    assert snap.p50 is None


def test_render_shows_mail_received_and_sdi_counts() -> None:
    """pec_inbound_total and pec_sdi_notifications_total are summed over workers and shown."""
    extra = """\
# TYPE pec_inbound_total counter
pec_inbound_total{provider="ARUBA PEC S.p.A.",signature="valid-trusted"} 4.0
pec_inbound_total{provider="ARUBA PEC S.p.A.",signature="invalid"} 1.0
# TYPE pec_sdi_notifications_total counter
pec_sdi_notifications_total{type="RC",evidence="true"} 2.0
pec_sdi_notifications_total{type="invoice-received",evidence="true"} 1.0
"""
    snap = Snapshot.build(
        elapsed=1.0,
        mailboxes=3,
        provider={},
        agent=parse_metrics([AGENT]),
        workers=parse_metrics([WORKER_A, extra]),
        first_event_after=None,
    )
    assert (snap.inbound, snap.sdi) == (5, 3)
    assert any(
        "mail received       5" in line and "SdI files       3" in line for line in render(snap)
    )


def test_render_shows_the_invoice_states_reached() -> None:
    """pec_sdi_invoice_transitions_total: invoices by the SdI state they moved to (stale
    and duplicate notifications not counted), and conflicts; no line before any."""
    extra = """\
# TYPE pec_sdi_invoice_transitions_total counter
pec_sdi_invoice_transitions_total{to_state="delivered",outcome="advanced"} 3.0
pec_sdi_invoice_transitions_total{to_state="delivered",outcome="stale"} 2.0
pec_sdi_invoice_transitions_total{to_state="accepted",outcome="advanced"} 1.0
pec_sdi_invoice_transitions_total{to_state="accepted",outcome="out-of-order"} 1.0
pec_sdi_invoice_transitions_total{to_state="accepted",outcome="conflict"} 1.0
pec_sdi_invoice_transitions_total{to_state="refused",outcome="advanced"} 0.0
"""

    def snapshot(text: str) -> Snapshot:
        return Snapshot.build(
            elapsed=1.0,
            mailboxes=3,
            provider={},
            agent=parse_metrics([AGENT]),
            workers=parse_metrics([WORKER_A, text]),
            first_event_after=None,
        )

    snap = snapshot(extra)
    assert dict(snap.invoice_states)["delivered"] == 3
    assert dict(snap.invoice_states)["accepted"] == 2
    assert snap.invoice_conflicts == 1
    lines = [line for line in render(snap) if "invoices sent" in line]
    assert lines == ["            invoices sent: delivered 3  accepted 2   conflicts 1"]
    assert not any("invoices sent" in line for line in render(snapshot("")))
