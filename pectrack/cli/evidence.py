"""``pectrack evidence``: write the delivery dossier of one sent message.

    pectrack evidence --mailbox ufficio-legale --msgid '<20240301.42@erp.example.it>' \\
        --out dossier/ [--web http://127.0.0.1:6066] [--archive s3://bucket/prefix] \\
        [--trust anchors/]

The message's state comes from a worker's lookup (``--web``, any worker); the signed
receipts from the archive itself (``--archive``) or else from the worker's
``GET /evidence/<sha256>``. Exit status 0 when every receipt was fetched intact and
re-verifies; 1 when one is missing or does not verify; 2 for a usage error or an unknown
message.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.evidence.dossier import Fetch

TIMEOUT_SECONDS = 30
MAX_OBJECT_BYTES = 128 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evidence",
        help="write the delivery dossier of a sent message (signed receipts, re-verified)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--mailbox", help="mailbox id the message was sent from")
    parser.add_argument("--msgid", help="the sent message's Message-ID")
    parser.add_argument("--key", help="or the correlation key '<mailbox> <msgid>'")
    parser.add_argument("--out", required=True, type=Path, help="directory to write")
    parser.add_argument(
        "--web", default="http://127.0.0.1:6066", help="a worker's web address (lookup)"
    )
    parser.add_argument("--archive", help="read receipts from this archive (file:// or s3://)")
    parser.add_argument("--trust", help="trust anchors, PEM file or directory (default: AgID CA1)")
    parser.set_defaults(func=run)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, response.read(MAX_OBJECT_BYTES)
    except urllib.error.HTTPError as error:
        return error.code, error.read(64 * 1024)


def _lookup(web: str, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    query = {"key": args.key} if args.key else {"mailbox": args.mailbox, "msgid": args.msgid}
    status, body = _get(f"{web.rstrip('/')}/message/?{urllib.parse.urlencode(query)}")
    try:
        loaded = json.loads(body)
    except ValueError:
        loaded = {"error": body[:200].decode("utf-8", "replace")}
    return status, loaded if isinstance(loaded, dict) else {"error": "not a JSON object"}


def _fetcher(args: argparse.Namespace) -> Fetch:
    from pipeline.evidence.archive import ArchiveError, is_sha256, open_archive  # noqa: PLC0415

    if args.archive:
        archive = open_archive(args.archive)

        def from_archive(digest: str) -> bytes | None:
            if not is_sha256(digest):
                return None
            try:
                return archive.get(digest)
            except ArchiveError as exc:
                print(f"pectrack evidence: {exc}", file=sys.stderr)
                return None

        return from_archive

    def from_worker(digest: str) -> bytes | None:
        if not is_sha256(digest):
            return None
        status, body = _get(f"{args.web.rstrip('/')}/evidence/{digest}")
        return body if status == 200 else None

    return from_worker


def run(args: argparse.Namespace) -> int:
    from pipeline.evidence.dossier import write_dossier  # noqa: PLC0415 - only when it runs
    from pipeline.trust import TrustStoreError, default_trust_store, load_trust_store  # noqa: PLC0415

    if not args.key and not (args.mailbox and args.msgid):
        print("pectrack evidence: give --mailbox and --msgid, or --key", file=sys.stderr)
        return 2
    try:
        trust = load_trust_store(args.trust) if args.trust else default_trust_store()
        fetch = _fetcher(args)
    except (TrustStoreError, ValueError) as exc:
        print(f"pectrack evidence: {exc}", file=sys.stderr)
        return 2
    try:
        status, state = _lookup(args.web, args)
    except OSError as exc:
        print(f"pectrack evidence: worker {args.web} unreachable: {exc}", file=sys.stderr)
        return 2
    if status != 200:
        print(f"pectrack evidence: lookup answered {status}: {state.get('error')}", file=sys.stderr)
        return 2
    result = write_dossier(state, fetch, trust, args.out)
    print(f"pectrack evidence: {len(result.files)} receipts written to {args.out}")
    for digest in result.missing:
        print(f"pectrack evidence: receipt {digest} missing from the archive", file=sys.stderr)
    for digest in result.unverified:
        print(f"pectrack evidence: receipt {digest} does not verify now", file=sys.stderr)
    return 1 if result.missing or result.unverified else 0
