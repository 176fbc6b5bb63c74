"""What every benchmark shares: the results table, percentiles, medians and RSS.

A :class:`Row` is one figure next to its baseline measured in the same run::

    benchmark                          measured    baseline            ratio  target        met
    examine 5 KB receipt (1 core)     2,410 /s    48 /s openssl smime  50.2x  >= 2,000 /s   yes
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The command line a benchmark starts a pectrack process with: this interpreter, this
# checkout's package (the composition root `python -m pectrack`).
PECTRACK: tuple[str, ...] = (sys.executable, "-m", "pectrack")


@dataclass(frozen=True, slots=True)
class Row:
    """One figure. ``ratio`` is measured / baseline (or baseline / measured when
    ``lower_is_better``, so that > 1 always means "better than the baseline")."""

    name: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None
    lower_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or self.measured == 0:
            return None
        if self.lower_is_better:
            return self.baseline / self.measured
        return self.measured / self.baseline


def fmt(value: float, unit: str) -> str:
    """``2410.3, "/s"`` -> ``2,410 /s``; small values keep decimals."""
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def table(title: str, rows: Sequence[Row]) -> str:
    """A plain-text (and Markdown-compatible) table of ``rows``."""
    header = ("benchmark", "measured", "baseline (same run)", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        baseline = ""
        if row.baseline is not None:
            baseline = fmt(row.baseline, row.unit)
            if row.baseline_label:
                baseline += f" ({row.baseline_label})"
        ratio = f"{row.ratio:.1f}x" if row.ratio is not None else ""
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append((row.name, fmt(row.measured, row.unit), baseline, ratio, row.target, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"### {title}", "", render(lines[0])]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out.extend(render(line) for line in lines[1:])
    return "\n".join(out)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; ``nan`` when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process), from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")
