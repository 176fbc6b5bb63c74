"""Structured logs: one JSON object per line, fields passed as keyword arguments.

::

    log_event(logger, logging.INFO, "sync.progress", mailbox="comune-x", folder="INBOX",
              done=5000, total=120000)
    {"ts": "2026-11-26T12:00:00.123Z", "level": "info", "logger": "agents.ingest",
     "event": "sync.progress", "mailbox": "comune-x", "folder": "INBOX", ...}

Callers pass ids, counts and error kinds, never a password or message content.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure", "log_event"]


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line (``fields`` from :func:`log_event` inlined)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return orjson.dumps(out, default=str).decode()


def configure(level: str = "info") -> None:
    """JSON lines on stderr; third-party chatter (aioimaplib debug dumps bytes) kept quiet."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioimaplib", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
