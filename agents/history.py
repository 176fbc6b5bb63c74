"""How far back a folder's first sync reaches: ``since = 2025-01-01`` or ``since_days = N``.

Set per ``[[mailbox]]`` or in ``[mailbox_defaults]``; pure, no I/O. The limit applies only
when a folder has no cursor yet (first start, a new mailbox, a UIDVALIDITY change): the
agent then asks ``UID SEARCH UID 1:* SINCE <date>`` (the server compares each message's
INTERNALDATE, by date only, RFC 3501 6.4.4) and moves the cursor past the folder's
newest UID. From then on everything after the cursor is read, whatever its date, so an
agent stopped for longer than ``since_days`` still loses nothing::

    >>> limit = parse_history({"since_days": 30}, "mailbox 'x'")
    >>> limit.start(date(2026, 12, 2))
    datetime.date(2026, 11, 2)
    >>> imap_date(date(2025, 1, 1))
    '1-Jan-2025'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

__all__ = [
    "HISTORY_KEYS",
    "HistoryError",
    "HistoryLimit",
    "imap_date",
    "parse_history",
    "with_defaults",
]

HISTORY_KEYS = frozenset({"since", "since_days"})
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class HistoryError(ValueError):
    """``since`` / ``since_days`` given wrong (the config turns it into a ConfigError)."""


@dataclass(frozen=True, slots=True)
class HistoryLimit:
    """A fixed first date (``since``) or a window of days back from today (``since_days``)."""

    since: date | None = None
    since_days: int | None = None

    def start(self, today: date) -> date:
        """The first INTERNALDATE date a first sync reads."""
        if self.since is not None:
            return self.since
        assert self.since_days is not None
        return today - timedelta(days=self.since_days)


def parse_history(box: Mapping[str, Any], where: str) -> HistoryLimit | None:
    """The limit of a mailbox table (defaults merged in), ``None`` for all history.

    ``since`` is a TOML date (``since = 2025-01-01``) or the same as a string;
    ``since_days`` a positive integer; not both. A mailbox can lift a limit set in
    ``[mailbox_defaults]`` with ``since_days = 0``.
    """
    since, days = box.get("since"), box.get("since_days")
    if since is not None and days is not None:
        raise HistoryError(f"{where}: give since or since_days, not both")
    if days is not None:
        if not isinstance(days, int) or isinstance(days, bool) or days < 0:
            raise HistoryError(f"{where}: since_days must be a whole number of days >= 0")
        return HistoryLimit(since_days=days) if days else None
    if since is None:
        return None
    if isinstance(since, datetime):
        raise HistoryError(f"{where}: since is a date (2025-01-01), not a date and time")
    if isinstance(since, str):
        try:
            since = date.fromisoformat(since)
        except ValueError:
            raise HistoryError(f"{where}: since must be a date like 2025-01-01") from None
    if not isinstance(since, date):
        raise HistoryError(f"{where}: since must be a date like 2025-01-01")
    return HistoryLimit(since=since)


def with_defaults(defaults: Mapping[str, Any], box: Mapping[str, Any]) -> dict[str, Any]:
    """``{**defaults, **box}``, except that a mailbox giving ``since`` or ``since_days``
    replaces whichever of the two the defaults gave."""
    if HISTORY_KEYS & box.keys():
        defaults = {k: v for k, v in defaults.items() if k not in HISTORY_KEYS}
    return {**defaults, **box}


def imap_date(day: date) -> str:
    """``date`` in IMAP's ``date`` form (``1-Jan-2025``), month names never localised."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"
