"""``pectrack simulate``: write synthetic, correctly signed PEC traffic and its truth.

    pectrack simulate --out /tmp/pec --format maildir --messages 200 --mailboxes 4 --seed 7

writes ``/tmp/pec/<mailbox>/{INBOX,Sent}/{cur,new,tmp}`` (or numbered ``.eml`` files),
``truth.jsonl`` (the expected parse of every message), ``expected.json`` (the final
delivery state of every sent message and recipient) and ``anchor.pem``, so that
``pectrack inspect --trust /tmp/pec/anchor.pem`` verifies what was written.
``--sdi-invoices N`` adds e-invoicing traffic: the SdI's envelopes (every notification
type, invoices received) in the users' INBOX, and ``sdi-expected.json`` (the final state
of every invoice sent, by mailbox and NomeFile).

Files are written by :mod:`pipeline.simulate.files`.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from pipeline.simulate.sdi import SdiItem

DEFAULT_START = "2024-03-01T09:00:00+01:00"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. {DEFAULT_START})"
        ) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write synthetic signed PEC traffic with its ground truth",
        description=__doc__.split("\n\nThis module")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument(
        "--format",
        choices=("eml", "maildir"),
        default="eml",
        help="numbered .eml files, or one Maildir per mailbox and folder (default: eml)",
    )
    parser.add_argument(
        "--messages", type=_count, default=100, metavar="N", help="messages sent (default: 100)"
    )
    parser.add_argument(
        "--mailboxes", type=_count, default=4, metavar="M", help="user mailboxes (default: 4)"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="RNG seed (default: 1)")
    parser.add_argument(
        "--start",
        type=_instant,
        default=_instant(DEFAULT_START),
        metavar="ISO",
        help=f"simulated time of the first message; naive means CET (default: {DEFAULT_START})",
    )
    parser.add_argument(
        "--attachment-size",
        type=_count,
        default=2048,
        metavar="BYTES",
        help="attachment per message; 50000 or 2000000 for benchmarks (default: 2048)",
    )
    parser.add_argument(
        "--sdi-invoices",
        type=_count,
        default=0,
        metavar="N",
        help="invoices handled by the SdI (notifications, invoices received) (default: 0)",
    )
    parser.add_argument(
        "--anchor-out", type=Path, metavar="FILE", help="trust anchor PEM (default: DIR/anchor.pem)"
    )
    parser.set_defaults(func=run)


def _progress(total: int) -> Callable[[int], None] | None:
    if total < 1000:
        return None
    step = max(total // 10, 1)

    def report(done: int) -> None:
        if done % step == 0:
            print(f"  {done}/{total} messages", file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    from pipeline.simulate.ca import default_pki  # noqa: PLC0415 - only when it runs
    from pipeline.simulate.files import write_eml, write_maildir  # noqa: PLC0415
    from pipeline.simulate.traffic import generate_traffic  # noqa: PLC0415

    out: Path = args.out
    if args.mailboxes < 1:
        print("pectrack simulate: --mailboxes must be at least 1", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"pectrack simulate: {out} exists and is not a directory", file=sys.stderr)
        return 2
    items = generate_traffic(
        args.seed,
        args.messages,
        args.mailboxes,
        args.start,
        attachment_size=args.attachment_size,
        progress=_progress(args.messages),
    )
    sdi = _sdi_traffic(args, len(items))
    items += [item.traffic_item(len(items) + i) for i, item in enumerate(sdi)]
    try:
        writer = write_maildir if args.format == "maildir" else write_eml
        writer(items, out)
        if sdi:
            states = {f"{i.mailbox} {i.nome_file}": i.final_state for i in sdi if i.final_state}
            (out / "sdi-expected.json").write_bytes(
                orjson.dumps(states, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            )
        anchor: Path = args.anchor_out or out / "anchor.pem"
        anchor.write_bytes(default_pki().anchor_pem())
    except OSError as exc:
        print(f"pectrack simulate: cannot write: {exc}", file=sys.stderr)
        return 1
    kinds = Counter(str(item.truth.kind) for item in items)
    faulty = sum(1 for item in items if item.truth.fault is not None)
    print(f"wrote {len(items)} messages ({args.format}) to {out}; trust anchor {anchor}")
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:<28}{count:>7}")
    print(f"  {'(tampered or forged)':<28}{faulty:>7}")
    if sdi:
        for kind, count in sorted(Counter(i.kind for i in sdi).items()):
            print(f"  {'SdI ' + kind:<28}{count:>7}")
    return 0


def _sdi_traffic(args: argparse.Namespace, offset: int) -> list[SdiItem]:
    from pipeline.simulate.ca import default_pki  # noqa: PLC0415
    from pipeline.simulate.scenario import Scenario  # noqa: PLC0415
    from pipeline.simulate.sdi import generate_sdi_traffic  # noqa: PLC0415
    from pipeline.simulate.traffic import TrafficMix  # noqa: PLC0415

    """SdI traffic to the same user mailboxes as the PEC traffic (the scenario's)."""
    if args.sdi_invoices < 1:
        return []
    scenario = Scenario(random.Random(0), default_pki(), TrafficMix(), args.start)  # noqa: S311
    scenario.populate(args.mailboxes)
    boxes = tuple((box, box) for box in scenario.boxes)
    rng = random.Random(args.seed * 7919 + offset)  # noqa: S311 - simulation
    return generate_sdi_traffic(
        rng, default_pki(), boxes, args.sdi_invoices, args.start, sent_copies=True
    )
