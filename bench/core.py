"""Core benchmark: parse + classify + verify (integrity and trust) on ONE core.

Messages come from the simulated providers (``pipeline.simulate``), signed by the test
PKI like real ones (RSA-2048 / SHA-1 for the ``aruba`` provider, as in the field):

* a ~5 KB delivery receipt (``avvenuta-consegna``, ``sintetica``);
* a ~50 KB and a ~2 MB ``posta-certificata`` envelope (the submission, attachments
  included, as ``postacert.eml``).

Each set is a pool of distinct messages (different msgid, hence different daticert and
signature) cycled for ``--seconds``; the rate is the median of ``--repeats`` runs of
``pipeline.core.examine(raw, trust)``. The baseline, in the same run and on the same core,
is ``openssl smime -verify`` as one subprocess per message, the way many PEC integrations
verify today. Memory: RSS before and after examining ``--memory-count`` messages (100,000
for the issue's figure) after a warm-up; flat means the end RSS is within a few percent.

    .venv/bin/python -m bench.core                          # ~1 minute
    .venv/bin/python -m bench.core --memory-count 100000    # the issue's memory figure
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.common import Row, median, rss_kib, table
from pipeline.core import Integrity, Kind, Trust, TrustStore, examine
from pipeline.core.model import ReceiptVariant, Recipient, RecipientType
from pipeline.simulate import Attachment, Notice, OriginalMessage, Provider, catalogue
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import CET

AT = datetime(2024, 3, 1, 10, 0, 0, tzinfo=CET)
RECEIPTS_PER_SECOND_TARGET = 2000.0
OPENSSL_RATIO_TARGET = 20.0
MEMORY_GROWTH_LIMIT = 0.05  # end RSS within 5% of the warmed-up RSS


@dataclass(frozen=True, slots=True)
class Sample:
    """A pool of distinct messages of one kind and size."""

    name: str
    raws: tuple[bytes, ...]
    is_receipt: bool

    @property
    def size(self) -> int:
        return sum(len(raw) for raw in self.raws) // len(self.raws)


def _original(index: int, attachment: int, provider: Provider) -> OriginalMessage:
    recipients = (
        Recipient("giulia.bianchi@postecert.it", RecipientType.CERTIFICATO),
        Recipient("luca.ferrari@gmail.com", RecipientType.ESTERNO),
    )
    attachments: tuple[Attachment, ...] = ()
    if attachment:
        # Incompressible, like the PDFs and scans people send.
        data = os.urandom(attachment)
        attachments = (Attachment(f"documento_{index}.pdf", "application/pdf", data),)
    return OriginalMessage(
        sender=f"mario.rossi@{provider.domain}",
        recipients=recipients,
        subject=f"Fattura n. {index}",
        msgid=f"<20240301100000.{index:06d}.bench@mario.rossi.client>",
        date=AT,
        body="Gentile cliente,\nin allegato la fattura.\n",
        attachments=attachments,
        requested_variant=ReceiptVariant.SINTETICA,
    )


def _issue(provider: Provider, kind: Kind, index: int, attachment: int) -> bytes:
    original = _original(index, attachment, provider)
    delivery = original.recipients[0].address if kind is Kind.AVVENUTA_CONSEGNA else None
    notice = Notice(
        kind,
        original,
        identificativo=provider.identificativo(AT, index),
        at=AT.replace(second=5),
        message_id=None if kind is Kind.POSTA_CERTIFICATA else f"<{kind}.{index}@x>",
        delivery_recipient=delivery,
    )
    return provider.issue(notice)


def _attachment_for(provider: Provider, target: int) -> int:
    """Attachment bytes that make an envelope about ``target`` bytes (a linear fit)."""
    small = len(_issue(provider, Kind.POSTA_CERTIFICATA, 0, 1000))
    large = len(_issue(provider, Kind.POSTA_CERTIFICATA, 0, 11000))
    per_byte = (large - small) / 10000
    return max(1, int(1000 + (target - small) / per_byte))


def build_samples(providers: Sequence[Provider], pool: int) -> list[Sample]:
    """5 KB receipts, 50 KB and 2 MB envelopes: ``pool`` distinct receipts per provider."""
    env_50k = _attachment_for(providers[0], 50_000)
    env_2m = _attachment_for(providers[0], 2_000_000)
    receipts, medium, large = [], [], []
    for n in range(pool):
        provider = providers[n % len(providers)]
        receipts.append(_issue(provider, Kind.AVVENUTA_CONSEGNA, n, 0))
        if n < max(2, pool // 4):
            medium.append(_issue(provider, Kind.POSTA_CERTIFICATA, n, env_50k))
        if n < 2:
            large.append(_issue(provider, Kind.POSTA_CERTIFICATA, n, env_2m))
    return [
        Sample("receipt ~5 KB", tuple(receipts), True),
        Sample("envelope ~50 KB", tuple(medium), False),
        Sample("envelope ~2 MB", tuple(large), False),
    ]


def check(sample: Sample, trust: TrustStore) -> None:
    """Every message must verify and classify: a fast wrong answer is not a result."""
    for raw in sample.raws:
        examined = examine(raw, trust)
        expected = Kind.AVVENUTA_CONSEGNA if sample.is_receipt else Kind.POSTA_CERTIFICATA
        ok = (
            examined.message.kind is expected
            and examined.signature.integrity is Integrity.VALID
            and examined.signature.trust is Trust.TRUSTED
            and not examined.disqualifying_defects
        )
        if not ok:
            raise SystemExit(f"{sample.name}: examine() got {examined}")


def examine_rate(sample: Sample, trust: TrustStore, seconds: float) -> float:
    """Messages per second through ``examine`` for about ``seconds``."""
    raws = sample.raws
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for raw in raws:
            examine(raw, trust)
        done += len(raws)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def openssl_rate(sample: Sample, anchor: Path, count: int) -> float:
    """``openssl smime -verify`` as a subprocess per message (message on stdin)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("openssl is not installed: it is the baseline")
    argv = [openssl, "smime", "-verify", "-CAfile", str(anchor), "-purpose", "any"]
    argv += ["-attime", str(int(AT.timestamp()) + 60), "-out", "/dev/null"]
    started = time.perf_counter()
    for n in range(count):
        result = subprocess.run(
            argv, input=sample.raws[n % len(sample.raws)], capture_output=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"openssl refused {sample.name}: {result.stderr.decode()[:300]}")
    return count / (time.perf_counter() - started)


def memory_run(samples: Sequence[Sample], trust: TrustStore, count: int) -> tuple[int, int]:
    """(RSS after a warm-up, RSS after ``count`` more messages), in KiB.

    Nine receipts for each 50 KB envelope, like a sender's mailbox.
    """
    receipts, envelopes = samples[0].raws, samples[1].raws
    mix = [*receipts[: 9 * len(envelopes)], *envelopes]
    warmup = max(2000, len(mix))
    for n in range(warmup):
        examine(mix[n % len(mix)], trust)
    gc.collect()
    before = rss_kib()
    for n in range(count):
        examine(mix[n % len(mix)], trust)
    gc.collect()
    return before, rss_kib()


def pin_one_core(cpu: int | None) -> int:
    """Run this process (and the openssl children) on one CPU; returns which."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def run(args: argparse.Namespace) -> list[Row]:
    cpu = pin_one_core(args.cpu)
    pki = default_pki()
    providers = catalogue(pki)
    chosen = [p for p in providers if p.domain == "pec.aruba.it"] if args.aruba else providers
    started = time.monotonic()
    samples = build_samples(chosen, args.pool)
    print(
        f"core: {len(samples)} message sets built in {time.monotonic() - started:.1f}s"
        f" ({', '.join(f'{s.name}: {len(s.raws)} x {s.size:,} B' for s in samples)});"
        f" pinned to CPU {cpu}",
        flush=True,
    )
    trust = TrustStore.from_bytes(pki.anchor_pem())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pectrack-bench-") as tmp:
        anchor = Path(tmp) / "anchor.pem"
        anchor.write_bytes(pki.anchor_pem())
        for sample in samples:
            check(sample, trust)
            rates = [examine_rate(sample, trust, args.seconds) for _ in range(args.repeats)]
            rate = median(rates)
            count = args.openssl_count if sample.size < 1_000_000 else args.openssl_count // 2
            base = median([openssl_rate(sample, anchor, count) for _ in range(args.repeats)])
            label = f"{sample.name} ({sample.size / 1024:,.0f} KiB avg), 1 core"
            print(f"  {label}: {rate:,.0f}/s (runs {', '.join(f'{r:,.0f}' for r in rates)});"
                  f" openssl {base:,.1f}/s", flush=True)  # fmt: skip
            target = f">= {OPENSSL_RATIO_TARGET:.0f}x openssl"
            met = rate / base >= OPENSSL_RATIO_TARGET
            if sample.is_receipt:
                target = f">= {RECEIPTS_PER_SECOND_TARGET:,.0f} /s and {target}"
                met = met and rate >= RECEIPTS_PER_SECOND_TARGET
            rows.append(Row(label, rate, "/s", base, "openssl smime", target, met))
            bundle = Path(args.openssl_bundle) if args.openssl_bundle else None
            if sample.is_receipt and bundle is not None and bundle.exists():
                # Integrations point -CAfile at the whole trust list (AgID's has ~100+ CAs):
                # the system bundle stands in for it, with the anchor appended.
                listed = Path(tmp) / "bundle.pem"
                listed.write_bytes(bundle.read_bytes() + pki.anchor_pem())
                n_certs = listed.read_bytes().count(b"BEGIN CERTIFICATE")
                big = median([openssl_rate(sample, listed, count) for _ in range(args.repeats)])
                print(f"  openssl with a {n_certs}-certificate CAfile: {big:,.1f}/s", flush=True)
                rows.append(
                    Row(
                        f"{sample.name}, vs openssl with a {n_certs}-cert CAfile",
                        rate,
                        "/s",
                        big,
                        "openssl smime",
                        f">= {OPENSSL_RATIO_TARGET:.0f}x openssl",
                        rate / big >= OPENSSL_RATIO_TARGET,
                    )
                )
    before, after = memory_run(samples, trust, args.memory_count)
    growth = (after - before) / before
    print(f"  memory: {before / 1024:.1f} MiB after warm-up, {after / 1024:.1f} MiB after"
          f" {args.memory_count:,} more messages ({growth:+.1%})", flush=True)  # fmt: skip
    rows.append(
        Row(
            f"RSS after {args.memory_count:,} messages",
            after / 1024,
            "MiB",
            before / 1024,
            "after warm-up",
            f"<= +{MEMORY_GROWTH_LIMIT:.0%} (flat)",
            growth <= MEMORY_GROWTH_LIMIT,
        )
    )
    return rows


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
        prog="python -m bench.core", description=(__doc__ or "").splitlines()[0]
    )
    out.add_argument("--seconds", type=float, default=3.0, help="per timed run")
    out.add_argument("--repeats", type=int, default=3, help="timed runs; the median is shown")
    out.add_argument("--pool", type=int, default=64, help="distinct receipts per set")
    out.add_argument("--openssl-count", type=int, default=40, help="openssl runs per set")
    out.add_argument("--memory-count", type=int, default=20_000, help="100000 for the issue")
    out.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    out.add_argument(
        "--openssl-bundle",
        default="/etc/ssl/certs/ca-certificates.crt",
        help="a CA bundle for the second openssl baseline, like a trust list ('' to skip)",
    )
    out.add_argument(
        "--aruba",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="only the RSA/SHA-1 provider (default); --no-aruba mixes all four",
    )
    return out


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parser().parse_args(argv)
    rows = run(args)
    print()
    print(table("Core: parse + classify + verify, one core", rows))
    sys.stdout.flush()
    return rows


if __name__ == "__main__":
    main()
