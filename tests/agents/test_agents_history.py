"""since / since_days: parsed from the TOML (per mailbox or by default), as IMAP dates."""

from __future__ import annotations

import tomllib
from datetime import date

import pytest

from agents.config import ConfigError, parse_config
from agents.history import HistoryLimit, imap_date

TOML = """
[kafka]
bootstrap = "k:9092"
[mailbox_defaults]
host = "imap.example.it"
since_days = 365
[[mailbox]]
id = "by-default"
user = "u"
password_env = "PW"
[[mailbox]]
id = "fixed"
user = "u"
password_env = "PW"
since = 2025-01-01
[[mailbox]]
id = "lifted"
user = "u"
password_env = "PW"
since_days = 0
"""


def test_defaults_apply_and_a_mailbox_overrides_or_lifts_them() -> None:
    boxes = {b.id: b for b in parse_config(tomllib.loads(TOML), {"PW": "x"}).mailboxes}
    assert boxes["by-default"].history == HistoryLimit(since_days=365)
    assert boxes["fixed"].history == HistoryLimit(since=date(2025, 1, 1))  # replaces since_days
    assert boxes["lifted"].history is None
    fixed, by_default = boxes["fixed"].history, boxes["by-default"].history
    assert fixed is not None
    assert by_default is not None
    assert fixed.start(date(2026, 12, 2)) == date(2025, 1, 1)
    assert by_default.start(date(2026, 12, 2)) == date(2025, 12, 2)


def test_default_since_days_reaches_every_mailbox() -> None:
    data = tomllib.loads(TOML)
    data["mailbox"] = data["mailbox"][:1]
    (box,) = parse_config(data, {"PW": "x"}).mailboxes
    assert box.history == HistoryLimit(since_days=365)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("since = 2025-01-01\nsince_days = 3", "not both"),
        ("since = 2025-01-01T10:00:00", "not a date and time"),
        ('since = "1 Jan 2025"', "like 2025-01-01"),
        ("since = 20250101", "like 2025-01-01"),
        ("since_days = -1", ">= 0"),
        ('since_days = "30"', ">= 0"),
    ],
)
def test_bad_limits_are_config_errors(extra: str, message: str) -> None:
    text = TOML.split("[[mailbox]]", maxsplit=1)[0].replace("since_days = 365\n", "")
    text += '[[mailbox]]\nid = "a"\nuser = "u"\npassword_env = "PW"\n' + extra + "\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(tomllib.loads(text), {"PW": "x"})


def test_a_string_date_is_accepted() -> None:
    text = TOML.split("[[mailbox]]", maxsplit=1)[0].replace(
        "since_days = 365", 'since = "2024-02-29"'
    )
    text += '[[mailbox]]\nid = "a"\nuser = "u"\npassword_env = "PW"\n'
    (box,) = parse_config(tomllib.loads(text), {"PW": "x"}).mailboxes
    assert box.history == HistoryLimit(since=date(2024, 2, 29))


@pytest.mark.parametrize(
    ("day", "text"),
    [(date(2025, 1, 1), "1-Jan-2025"), (date(2024, 12, 31), "31-Dec-2024"),
     (date(2026, 5, 9), "9-May-2026")],
)  # fmt: skip
def test_imap_date_form(day: date, text: str) -> None:
    assert imap_date(day) == text
