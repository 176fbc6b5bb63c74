"""Write simulated traffic to disk: ``.eml`` files or Maildirs, plus the truth files.

The only module of ``pipeline.simulate`` that touches the file system.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from pipeline.simulate.traffic import SENT, TrafficItem, expected_states

__all__ = ["maildir_name", "write_eml", "write_maildir", "write_truth"]


def _truth_line(item: TrafficItem, path: Path) -> bytes:
    record = {
        "path": path.as_posix(),
        "mailbox": item.mailbox,
        "folder": item.folder,
        "arrival_order": item.arrival_order,
        "arrival_time": item.arrival_time,
        "truth": item.truth,
        "counts_as_evidence": item.truth.counts_as_evidence,
        "tampered": item.truth.tampered,
        "forged": item.truth.forged,
    }
    return orjson.dumps(record) + b"\n"


def write_truth(items: Sequence[TrafficItem], paths: Sequence[Path], directory: Path) -> None:
    """``truth.jsonl`` (one line per message, ``path`` relative to ``directory``) and
    ``expected.json``: ``[{"mailbox", "msgid", "recipients": {address: state}}]``."""
    with (directory / "truth.jsonl").open("wb") as out:
        for item, path in zip(items, paths, strict=True):
            out.write(_truth_line(item, path.relative_to(directory)))
    expected = [
        {"mailbox": mailbox, "msgid": msgid, "recipients": states}
        for (mailbox, msgid), states in sorted(expected_states(items).items())
    ]
    (directory / "expected.json").write_bytes(orjson.dumps(expected, option=orjson.OPT_INDENT_2))


def write_eml(items: Iterable[TrafficItem], directory: Path) -> list[Path]:
    """One byte-exact ``000042-avvenuta-consegna.eml`` per item, plus the truth files."""
    directory.mkdir(parents=True, exist_ok=True)
    listed = list(items)
    paths = [directory / item.filename for item in listed]
    for item, path in zip(listed, paths, strict=True):
        path.write_bytes(item.raw)
    write_truth(listed, paths, directory)
    return paths


def maildir_name(item: TrafficItem) -> str:
    """``1709280001.M42P0.pectrack-sim`` (new/) or with ``:2,S`` (cur/, seen)."""
    base = f"{int(item.arrival_time.timestamp())}.M{item.arrival_order}P0.pectrack-sim"
    return base + ":2,S" if item.folder == SENT else base


def write_maildir(items: Iterable[TrafficItem], directory: Path) -> list[Path]:
    """``directory/<mailbox>/<folder>/{cur,new,tmp}``: Sent copies in cur/ (seen), the
    rest in new/; plus the truth files at the top."""
    directory.mkdir(parents=True, exist_ok=True)
    listed = list(items)
    paths: list[Path] = []
    for item in listed:
        box = directory / item.mailbox / item.folder
        for sub in ("cur", "new", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        path = box / ("cur" if item.folder == SENT else "new") / maildir_name(item)
        path.write_bytes(item.raw)
        paths.append(path)
    write_truth(listed, paths, directory)
    return paths
