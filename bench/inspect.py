"""``python -m bench.inspect``: ``pectrack inspect --json`` over a directory of receipts.

Writes ``--files`` copies of one 22 KB simulated completa delivery receipt (RSA, SHA-1,
like a real Aruba one) into a temporary directory, then times the real command as a
subprocess (start-up included) with ``--jobs 1`` and ``--jobs N``, and the core alone
(``examine`` in this process) on the same bytes. Prints files/s for each, the best of
``--repeats`` runs; the goal of issue #18 is >= 4,000 files/s on one core for 4,000
files, start-up included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.core.examine import examine
from pipeline.core.model import Kind
from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import Notice, catalogue
from pipeline.simulate.render import Attachment
from pipeline.simulate.scenario import original_message


def receipt() -> bytes:
    """A completa delivery receipt of ~18 KB from the Aruba-like provider (RSA, SHA-1)."""
    import random  # noqa: PLC0415
    from datetime import datetime, timedelta, timezone  # noqa: PLC0415

    from pipeline.core.model import Recipient, RecipientType  # noqa: PLC0415

    at = datetime(2024, 3, 1, 10, tzinfo=timezone(timedelta(hours=1)))
    aruba = catalogue(default_pki())[0]
    original = original_message(
        random.Random(1),
        sender="mario.rossi@pec.aruba.it",
        recipients=(Recipient("giulia.bianchi@postecert.it", RecipientType.CERTIFICATO),),
        at=at,
        index=1,
        attachment_size=0,
    )
    original = type(original)(**{
        **{f: getattr(original, f) for f in original.__dataclass_fields__},
        "attachments": (Attachment("documento.pdf", "application/pdf", b"%PDF" * 3000),),
    })  # fmt: skip
    notice = Notice(
        Kind.AVVENUTA_CONSEGNA, original, aruba.identificativo(at, 1), at,
        delivery_recipient="giulia.bianchi@postecert.it",
    )  # fmt: skip
    return aruba.issue(notice)


def run(directory: Path, anchor: Path, jobs: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pectrack", "inspect", "--json", "--jobs", str(jobs),
         "--trust", str(anchor), str(directory)],
        capture_output=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert done.stdout.count(b"\n") == len(os.listdir(directory)), done.stderr[-500:]
    return elapsed


def _time_core(raw: bytes, trust: TrustStore, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        examine(raw, trust)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inspect", description=__doc__)
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (a shared machine)")
    args = parser.parse_args(argv)
    raw = receipt()
    pki = default_pki()
    trust = TrustStore.from_bytes(pki.anchor_pem())
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp:
        root = Path(tmp)
        directory = root / "archive"
        directory.mkdir()
        for index in range(args.files):
            (directory / f"{index:06d}.eml").write_bytes(raw)
        anchor = root / "anchor.pem"
        anchor.write_bytes(pki.anchor_pem())
        examine(raw, trust)  # warm caches as a long run would
        core = min(_time_core(raw, trust, args.files) for _ in range(args.repeats))
        (root / "empty").mkdir()
        startup = min(run(root / "empty", anchor, 1) for _ in range(args.repeats))
        one = min(run(directory, anchor, 1) for _ in range(args.repeats))
        many = min(run(directory, anchor, args.jobs) for _ in range(args.repeats))
    print(f"receipt size: {len(raw)} bytes, files: {args.files}")
    print(f"core examine (this process):       {args.files / core:8.0f} files/s")
    print(f"inspect start-up (empty dir):      {startup:8.2f} s")
    print(f"inspect --json --jobs 1:           {args.files / one:8.0f} files/s "
          f"({args.files / max(one - startup, 1e-9):.0f}/s without start-up)")  # fmt: skip
    print(f"inspect --json --jobs {args.jobs}:           {args.files / many:8.0f} files/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
