"""The archive settings: environment and flags, and what is refused before start."""

from __future__ import annotations

import argparse

import pytest

from pipeline.streams.settings import (
    StreamSettings,
    add_arguments,
    from_arguments,
    from_environment,
)


def test_archive_settings_from_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PECTRACK_ARCHIVE": "s3://evidence/pec",
        "PECTRACK_ARCHIVE_KINDS": "receipts,sent",
        "PECTRACK_ARCHIVE_RETENTION_DAYS": "3650",
        "PECTRACK_ARCHIVE_LOCK_MODE": "COMPLIANCE",
    }
    settings = from_environment(env=env)
    assert (settings.archive, settings.archive_kinds) == ("s3://evidence/pec", "receipts,sent")
    assert (settings.archive_retention_days, settings.archive_lock_mode) == (3650, "COMPLIANCE")
    for name in env:
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--archive", "file:///srv/evidence", "--archive-kinds", "receipts"])
    flagged = from_arguments(args, env={})
    assert (flagged.archive, flagged.archive_kinds) == ("file:///srv/evidence", "receipts")
    default = StreamSettings(datadir="/var/lib/pectrack/worker-0")
    assert default.archive_uri == "file:///var/lib/pectrack/worker-0/evidence"  # one machine
    assert StreamSettings(archive="none").archive_uri == ""
    assert StreamSettings().archive_retention_days == 0  # keep


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"archive": "/var/lib/evidence"}, "file:///path or s3://"),
        ({"archive": "file://relative"}, "absolute path"),
        ({"archive_kinds": "receipts,attachments"}, "archive kinds"),
        ({"archive_lock_mode": "GOVERNANCE"}, "is for s3:// archives"),
        ({"archive": "none", "archive_lock_mode": "GOVERNANCE"}, "needs an s3:// archive"),
        ({"archive": "s3://b", "archive_lock_mode": "GOVERNANCE"}, "retention_days >= 1"),
        (
            {
                "archive": "file:///x",
                "archive_lock_mode": "COMPLIANCE",
                "archive_retention_days": 10,
            },
            "for s3:// archives",
        ),
        ({"archive_retention_days": -1}, "at least 0"),
    ],
)
def test_bad_archive_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamSettings(**changes).validate()  # type: ignore[arg-type]
