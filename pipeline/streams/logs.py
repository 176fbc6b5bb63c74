"""The worker's logs: JSON lines in the agent's format (:mod:`agents.logs`).

faust (through ``mode``) replaces the root logger's handlers when the worker starts;
:func:`logging_config` is the ``dictConfig`` it is given instead of its coloured console
handler, so faust's own records come out as JSON too.
"""

from __future__ import annotations

from typing import Any

from agents.logs import configure, log_event

__all__ = ["configure", "log_event", "logging_config"]


def logging_config(level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "agents.logs.JsonFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {"aiokafka": {"level": "ERROR"}},
    }
