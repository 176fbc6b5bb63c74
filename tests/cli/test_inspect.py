"""``pectrack inspect``: JSON lines, the table, and clear errors that do not stop the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pectrack.cli import main
from pipeline.core.model import ErrorCode, Kind
from pipeline.simulate.ca import default_pki
from pipeline.simulate.provider import Fault, rewrite_header
from tests.core.test_smime import notice, provider
from tests.factories import make_pec

KEYS = {"file", "kind", "msgid", "identificativo", "provider", "recipient", "timestamp"}


@pytest.fixture
def mailbox(tmp_path: Path) -> dict[str, Path]:
    pki = default_pki()
    files = {
        "delivery": provider(pki).issue(notice()),
        "failure": provider(pki).issue(notice(Kind.ERRORE_CONSEGNA, error=ErrorCode.NO_DEST)),
        "forged": provider(pki).with_signer(pki.self_signed("X", "pec.aruba.it")).issue(notice()),
    }
    paths = {name: tmp_path / f"{name}.eml" for name in files}
    for name, raw in files.items():
        paths[name].write_bytes(raw)
    paths["anchor"] = tmp_path / "anchor.pem"
    paths["anchor"].write_bytes(pki.anchor_pem())
    paths["notmail"] = tmp_path / "photo.jpg"
    paths["notmail"].write_bytes(b"\xff\xd8\xff\xe0 not an email")
    return paths


def test_json_lines(mailbox: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """One object per file with the documented keys and signature fields."""
    files = [str(mailbox[n]) for n in ("delivery", "failure", "forged")]
    status = main(["inspect", "--json", "--trust", str(mailbox["anchor"]), *files])
    assert status == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["kind"] for row in rows] == [
        "avvenuta-consegna",
        "errore-consegna",
        "avvenuta-consegna",
    ]
    for row in rows:
        assert set(row) >= KEYS
        assert row["msgid"] == "<20240301100000.42@client.example.it>"
        assert row["recipient"] == "to@pec.other.it"
        assert row["timestamp"] == "2024-03-01T11:00:00+01:00"
        assert set(row["signature"]) >= {"integrity", "trust", "signer", "signing_time", "digest"}
    assert rows[0]["signature"]["trust"] == "trusted"
    assert rows[0]["defects"] == []
    assert rows[2]["signature"]["trust"] == "untrusted"


def test_foreign_signer_with_matching_from_is_a_defect(
    mailbox: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another provider's certificate, From rewritten to it: inspect shows signer-not-issuer."""
    forged = make_pec(Kind.ACCETTAZIONE, fault=Fault.WRONG_PROVIDER).raw
    path = tmp_path / "foreign.eml"
    path.write_bytes(rewrite_header(forged, "From", "posta-certificata@pec.altrogestore.it"))
    assert main(["inspect", "--json", "--trust", str(mailbox["anchor"]), str(path)]) == 0
    row = orjson.loads(capsys.readouterr().out)
    assert row["signature"]["trust"] == "trusted"
    assert [d.split(":")[0] for d in row["defects"]] == ["signer-not-issuer"]


def test_bad_files_are_reported_and_the_rest_still_run(
    mailbox: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file and a non-email: one stderr line each, exit 1, others reported."""
    files = [str(mailbox["notmail"]), "/nonexistent/x.eml", str(mailbox["delivery"])]
    status = main(["inspect", "--json", "--trust", str(mailbox["anchor"]), *files])
    captured = capsys.readouterr()
    assert status == 1
    assert len(captured.out.splitlines()) == 1
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert "photo.jpg: not an email message" in errors[0]
    assert "/nonexistent/x.eml: cannot read" in errors[1]


def test_table(mailbox: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: a header and one readable row per message."""
    main(["inspect", "--trust", str(mailbox["anchor"]), str(mailbox["forged"])])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FILE")
    assert "avvenuta-consegna" in lines[1]
    assert "valid/untrusted" in lines[1]


def test_default_trust_is_agid(
    mailbox: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --trust the bundled AgID CA1 is used: test-CA mail is untrusted."""
    main(["inspect", "--json", str(mailbox["delivery"])])
    row = orjson.loads(capsys.readouterr().out)
    assert row["signature"]["integrity"] == "valid"
    assert row["signature"]["trust"] == "untrusted"


def test_unusable_trust_file(mailbox: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A trust file that is not a certificate: a clear error and exit 2."""
    status = main(["inspect", "--trust", str(mailbox["notmail"]), str(mailbox["delivery"])])
    assert status == 2
    assert "trust store" in capsys.readouterr().err


def test_console_script(mailbox: dict[str, Path]) -> None:
    """The installed ``pectrack`` entry point runs inspect."""
    exe = Path(sys.executable).with_name("pectrack")
    result = subprocess.run(
        [
            str(exe),
            "inspect",
            "--json",
            "--trust",
            str(mailbox["anchor"]),
            str(mailbox["delivery"]),
        ],
        capture_output=True,
        check=True,
    )
    assert orjson.loads(result.stdout)["signature"]["trust"] == "trusted"
