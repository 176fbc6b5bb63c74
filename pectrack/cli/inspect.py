"""``pectrack inspect FILE...``: what a PEC message is, and whether its signature holds.

One JSON object per line with ``--json``, else a table. A file that cannot be read or is
not an email is reported on stderr; the others are still reported; the exit status is 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from pipeline.contracts.codec import dumps, examined_to_dict
from pipeline.core import TrustStore, examine
from pipeline.core.mime import split_entity
from pipeline.trust import TrustStoreError, default_trust_store, load_trust_store

_HEADER_LINE = re.compile(rb"^(?:[!-9;-~]+:|From )")
_MAIL_FIELDS = frozenset(
    {"from", "to", "subject", "date", "message-id", "received", "return-path", "mime-version"}
)
_COLUMNS = (("KIND", 25), ("MSGID", 36), ("RECIPIENT", 26), ("TIMESTAMP", 25), ("SIG", 17))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="classify PEC messages and verify their signatures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help=".eml files as stored")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--trust",
        metavar="PEM_OR_DIR",
        help="trust anchors (file or directory); default: the bundled AgID CA1",
    )
    parser.set_defaults(func=run)


def looks_like_email(raw: bytes) -> bool:
    """Starts with a header field (or an mbox ``From `` line) and has a mail header."""
    if not raw or _HEADER_LINE.match(raw[:1000]) is None:
        return False
    headers = split_entity(raw[:65536], max_header_bytes=65536).headers
    return any(name in _MAIL_FIELDS for name, _ in headers.fields)


def run(args: argparse.Namespace) -> int:
    try:
        trust: TrustStore = load_trust_store(args.trust) if args.trust else default_trust_store()
    except TrustStoreError as exc:
        print(f"pectrack inspect: trust store: {exc}", file=sys.stderr)
        return 2
    status = 0
    if not args.json:
        print(_row({"file": "FILE"}, header=True))
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(f"pectrack inspect: {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        if not looks_like_email(raw):
            print(f"pectrack inspect: {name}: not an email message", file=sys.stderr)
            status = 1
            continue
        data = {"file": name, **examined_to_dict(examine(raw, trust))}
        if args.json:
            sys.stdout.buffer.write(dumps(data) + b"\n")
        else:
            print(_row(data))
        sys.stdout.flush()
    return status


def _row(data: dict[str, Any], *, header: bool = False) -> str:
    if header:
        titles = " ".join(f"{name:{width}}" for name, width in _COLUMNS)
        return f"{'FILE':30} {titles} DEFECTS"
    sig = data["signature"]
    values = [
        data["kind"],
        data["msgid"] or "-",
        data["recipient"] or "-",
        data["timestamp"] or "-",
        f"{sig['integrity']}/{sig['trust']}",
    ]
    cells = " ".join(_fit(v, width) for v, (_, width) in zip(values, _COLUMNS, strict=True))
    defects = "; ".join(data["defects"]) or "-"
    return f"{_fit(data['file'], 30)} {cells} {defects}"


def _fit(value: str, width: int) -> str:
    return f"{value:{width}}" if len(value) <= width else value[: width - 1] + "…"
