"""The writers (.eml, Maildir, truth files) and the ``pectrack simulate`` subcommand."""

from __future__ import annotations

import mailbox
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from cryptography import x509

from pectrack.cli import main
from pipeline.core import TrustStore, examine
from pipeline.core.parse import read_layout
from pipeline.core.received import SdiNotice, receive
from pipeline.core.sdi_lifecycle import InvoiceTrack, apply, new_invoice
from pipeline.simulate.files import write_eml, write_maildir
from pipeline.simulate.traffic import SENT, TrafficItem, generate_traffic
from tests.simulate.helpers import needs_openssl, verify_message

START = datetime(2024, 3, 1, 9, 0)


@pytest.fixture(scope="module")
def items() -> list[TrafficItem]:
    return generate_traffic(2, 25, 3, START, attachment_size=256)


def test_write_eml_is_byte_exact_with_truth(items: list[TrafficItem], tmp_path: Path) -> None:
    """One .eml per item, bytes unchanged; truth.jsonl line per item; expected.json."""
    paths = write_eml(items, tmp_path)
    assert [p.name for p in paths] == [i.filename for i in items]
    assert all(p.read_bytes() == i.raw for p, i in zip(paths, items, strict=True))
    lines = (tmp_path / "truth.jsonl").read_bytes().splitlines()
    assert len(lines) == len(items)
    first = orjson.loads(lines[0])
    assert first["path"] == items[0].filename
    assert first["truth"]["kind"] == items[0].truth.kind.value
    assert first["truth"]["msgid"] == items[0].truth.msgid
    assert {"counts_as_evidence", "tampered", "forged", "mailbox", "folder"} <= set(first)
    expected = orjson.loads((tmp_path / "expected.json").read_bytes())
    assert expected
    assert set(expected[0]) == {"mailbox", "msgid", "recipients"}
    states = {s for e in expected for s in e["recipients"].values()}
    assert states <= {"accepted", "delivered", "delivery-failed", "rejected", "virus",
                      "delayed-12h", "delayed-24h", "submitted"}  # fmt: skip


def test_write_maildir_layout(items: list[TrafficItem], tmp_path: Path) -> None:
    """OUT/<mailbox>/{INBOX,Sent}/{cur,new,tmp}; stdlib mailbox.Maildir reads every message."""
    paths = write_maildir(items, tmp_path)
    assert len(paths) == len(items)
    boxes = {i.mailbox for i in items}
    for box in boxes:
        for folder in ("INBOX", "Sent"):
            base = tmp_path / box / folder
            if not base.exists():
                continue
            assert {p.name for p in base.iterdir()} == {"cur", "new", "tmp"}
    read = 0
    for box in boxes:
        for folder in ("INBOX", "Sent"):
            if (tmp_path / box / folder).exists():
                read += len(mailbox.Maildir(tmp_path / box / folder, create=False))
    assert read == len(items)
    for path, item in zip(paths, items, strict=True):
        assert path.read_bytes() == item.raw
        assert path.parent.name == ("cur" if item.folder == SENT else "new")
        assert path.name.endswith(":2,S") == (item.folder == SENT)
    truth = [orjson.loads(line) for line in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert all(
        (tmp_path / t["path"]).read_bytes() == i.raw for t, i in zip(truth, items, strict=True)
    )


@needs_openssl
def test_cli_writes_traffic_and_a_usable_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pectrack simulate writes files, a summary and an anchor that verifies them."""
    out = tmp_path / "out"
    status = main(["simulate", "--out", str(out), "--messages", "12", "--seed", "9",
                   "--start", "2024-03-01T09:00:00+01:00"])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "accettazione" in printed
    assert f"wrote {len(list(out.glob('*.eml')))} messages (eml)" in printed
    anchor = (out / "anchor.pem").read_bytes()
    x509.load_pem_x509_certificate(anchor)
    truth = [orjson.loads(line) for line in (out / "truth.jsonl").read_bytes().splitlines()]
    genuine = next(t for t in truth if t["truth"]["kind"] == "accettazione")
    raw = (out / genuine["path"]).read_bytes()
    at = datetime.fromisoformat(genuine["truth"]["timestamp"])
    assert verify_message(raw, anchor, at, tmp_path).returncode == 0


def test_cli_maildir_and_anchor_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format maildir and --anchor-out put things where asked."""
    out, anchor = tmp_path / "md", tmp_path / "trust" / "anchor.pem"
    anchor.parent.mkdir()
    status = main(["simulate", "--out", str(out), "--format", "maildir", "--messages", "5",
                   "--mailboxes", "2", "--anchor-out", str(anchor)])  # fmt: skip
    assert status == 0
    assert anchor.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert list(out.glob("*/INBOX/new/*"))
    assert list(out.glob("*/Sent/cur/*:2,S"))
    assert "(maildir)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--messages", "-3"], "must not be negative"),
        (["--messages", "many"], "not a whole number"),
        (["--start", "yesterday"], "not an ISO 8601 time"),
        (["--format", "mbox"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments: usage error (exit 2) naming the problem, nothing written."""
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--out", str(tmp_path / "x"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_file_as_output_and_zero_mailboxes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming a file, or --mailboxes 0: a clear message and exit status 2."""
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["simulate", "--out", str(target), "--messages", "1"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "o"), "--mailboxes", "0"]) == 2
    assert "--mailboxes must be at least 1" in capsys.readouterr().err


def test_cli_reports_progress_on_long_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From 1000 messages on, progress goes to stderr every tenth."""
    status = main(["simulate", "--out", str(tmp_path), "--messages", "1000",
                   "--attachment-size", "0"])  # fmt: skip
    assert status == 0
    err = capsys.readouterr().err
    assert "100/1000 messages" in err
    assert "1000/1000 messages" in err


def test_cli_writes_sdi_traffic_with_its_expected_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--sdi-invoices adds SdI envelopes to the users' INBOX and sdi-expected.json, whose
    states are what the core's reader and lifecycle make of the files written."""
    out = tmp_path / "pec"
    assert main(["simulate", "--out", str(out), "--messages", "3", "--sdi-invoices", "16"]) == 0
    assert "SdI RC" in capsys.readouterr().out
    expected = orjson.loads((out / "sdi-expected.json").read_bytes())
    trust = TrustStore.from_bytes((out / "anchor.pem").read_bytes())
    tracks: dict[str, InvoiceTrack] = {}
    for line in (out / "truth.jsonl").read_bytes().splitlines():
        entry = orjson.loads(line)
        raw = (out / entry["path"]).read_bytes()
        if b"pec.fatturapa.it" not in raw:
            continue
        _, records = receive(examine(raw, trust), read_layout(raw), entry["mailbox"])
        for record in records:
            if isinstance(record, SdiNotice) and record.event is not None:
                current = tracks.get(record.key) or new_invoice(record.key)
                tracks[record.key], _ = apply(current, record.event, record.notification_id)
    assert {key: track.state.value for key, track in tracks.items()} == expected
