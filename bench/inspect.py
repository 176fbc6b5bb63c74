"""``python -m bench.inspect``: ``pectrack inspect --json`` over a directory of receipts.

Writes ``--files`` copies of one 22 KB simulated completa delivery receipt (RSA, SHA-1,
like a real Aruba one) into a temporary directory, then times the real command as a
subprocess (start-up included) with ``--jobs 1`` and ``--jobs N``, and the core alone
(``examine`` in this process) on the same bytes. Prints files/s for each, the best of
``--repeats`` runs; the goal of issue #18 is >= 4,000 files/s on one core for 4,000
files, start-up included.

Each figure is given twice: by the wall clock and by the CPU time the process used
(user + system; for the subprocess, its rusage). On a shared machine the second is what
one core does; the first also counts waiting for it. ``examine`` CPU per record is what
the verify worker spends on the same message.

``--distinct N`` writes N different receipts of the same provider instead of copies of
one (other ids, times, boundaries: what per-provider caches see in a real archive), each
repeated to ``--files``; N signatures take the simulator a few seconds to make.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def receipt(index: int = 1) -> bytes:
    """A completa delivery receipt of ~18 KB from the Aruba-like provider (RSA, SHA-1);
    another ``index`` gives another message (ids, times, boundaries) of the same size."""
    import random  # noqa: PLC0415
    from datetime import datetime, timedelta, timezone  # noqa: PLC0415

    from pipeline.core.model import Recipient, RecipientType  # noqa: PLC0415

    at = datetime(2024, 3, 1, 10, tzinfo=timezone(timedelta(hours=1)))
    at += timedelta(seconds=index - 1)
    aruba = catalogue(default_pki())[0]
    original = original_message(
        random.Random(index),
        sender="mario.rossi@pec.aruba.it",
        recipients=(Recipient("giulia.bianchi@postecert.it", RecipientType.CERTIFICATO),),
        at=at,
        index=index,
        attachment_size=0,
    )
    original = type(original)(**{
        **{f: getattr(original, f) for f in original.__dataclass_fields__},
        "attachments": (Attachment("documento.pdf", "application/pdf", b"%PDF" * 3000),),
    })  # fmt: skip
    notice = Notice(
        Kind.AVVENUTA_CONSEGNA, original, aruba.identificativo(at, index), at,
        delivery_recipient="giulia.bianchi@postecert.it",
    )  # fmt: skip
    return aruba.issue(notice)


def run(directory: Path, anchor: Path, jobs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pectrack", "inspect", "--json", "--jobs", str(jobs),
         "--trust", str(anchor), str(directory)],
        capture_output=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.stdout.count(b"\n") == len(os.listdir(directory)), done.stderr[-500:]
    return elapsed, cpu


def _time_core(raws: list[bytes], trust: TrustStore, count: int) -> tuple[float, float]:
    """(wall, CPU) seconds for ``count`` examines, the receipts taken in turn."""
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        examine(raws[index % len(raws)], trust)
    return time.perf_counter() - started, time.process_time() - cpu


def _best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The best wall time and the best CPU time (not always of the same run)."""
    return min(wall for wall, _ in runs), min(cpu for _, cpu in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inspect", description=__doc__)
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (a shared machine)")
    parser.add_argument(
        "--distinct", type=int, default=1, metavar="N", help="N different receipts (default 1)"
    )
    args = parser.parse_args(argv)
    raws = [receipt(index + 1) for index in range(max(1, args.distinct))]
    pki = default_pki()
    trust = TrustStore.from_bytes(pki.anchor_pem())
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp:
        root = Path(tmp)
        directory = root / "archive"
        directory.mkdir()
        for index in range(args.files):
            (directory / f"{index:06d}.eml").write_bytes(raws[index % len(raws)])
        anchor = root / "anchor.pem"
        anchor.write_bytes(pki.anchor_pem())
        examine(raws[0], trust)  # warm caches as a long run would
        core = _best([_time_core(raws, trust, args.files) for _ in range(args.repeats)])
        (root / "empty").mkdir()
        startup = _best([run(root / "empty", anchor, 1) for _ in range(args.repeats)])
        one = _best([run(directory, anchor, 1) for _ in range(args.repeats)])
        many = _best([run(directory, anchor, args.jobs) for _ in range(args.repeats)])
    files = args.files
    sizes = sorted({len(raw) for raw in raws})
    print(f"receipt size: {sizes[0]}-{sizes[-1]} bytes, distinct: {len(raws)}, files: {files}")
    print("                                       wall clock        CPU time")
    print(
        f"core examine (this process):       {files / core[0]:8.0f} files/s  "
        f"{files / core[1]:8.0f} files/s  ({core[1] / files * 1e6:.0f} us CPU per record)"
    )
    print(f"inspect start-up (empty dir):      {startup[0]:8.2f} s        {startup[1]:8.2f} s")
    for label, (wall, cpu) in ((" 1", one), (f"{args.jobs:2d}", many)):
        print(f"inspect --json --jobs {label}:          {files / wall:8.0f} files/s  "
              f"{files / cpu:8.0f} files/s")  # fmt: skip
    print(f"  --jobs  1 without start-up:      {files / max(one[0] - startup[0], 1e-9):8.0f} "
          f"files/s  {files / max(one[1] - startup[1], 1e-9):8.0f} files/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
