"""``python -m bench`` (``make bench``): every benchmark with small defaults, one table each.

    core   parse + classify + verify on one core vs ``openssl smime`` per message; RSS
    e2e    simulator -> pec.raw -> workers -> pec.state-changes on the embedded broker,
           2 workers, then 1, 2, 4 partitions/workers and 10x the in-flight messages
    state  N tracked messages on one worker, per state store (memory, rocksdb): load rate,
           CPU and RSS per message, idle CPU, recovery after SIGKILL
    ingest Dovecot -> agent -> pec.raw (root only: Dovecot runs mail as uid ``mail``)

Each module runs alone with its full-size options (``python -m bench.core --help``).
Small defaults keep the whole run under 12 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench import core, e2e, state
from bench.common import table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["core", "e2e", "state", "ingest"]
    )
    args = parser.parse_args()
    started = time.monotonic()
    summary = []
    if "core" not in args.skip:
        rows = core.main(["--seconds", "2", "--repeats", "3", "--memory-count", "20000"])
        summary.append(table("Core: parse + classify + verify, one core", rows))
    if "e2e" not in args.skip:
        small = ["--seconds", "3", "--burst", "1500", "--inflight", "300", "--drain-timeout", "45"]
        rows = e2e.main(["--scaling", *small])
        summary.append(table("End to end on the embedded broker", rows))
    if "state" not in args.skip:
        rows, notes = state.main(["--counts", "20000", "--idle-seconds", "65"])
        title = "Worker state: tracked messages on one worker, per store"
        summary.append("\n\n".join([table(title, rows), *notes]))
    if "ingest" not in args.skip:
        if os.geteuid() != 0:
            print("\ningest: skipped (needs root for Dovecot)")
        else:
            print("\n### Ingest: Dovecot -> agent -> pec.raw", flush=True)
            argv = [sys.executable, "-m", "bench.ingest", "--mailboxes", "50", "--messages",
                    "10", "--appends", "50", "--rate", "10"]  # fmt: skip
            subprocess.run(argv, check=False)
    print(f"\n## Summary ({time.monotonic() - started:.0f}s)\n")
    print("\n\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
