"""The worker's logs: JSON lines in the agent's format.

faust (through ``mode``) replaces the root logger's handlers when the worker starts;
:func:`logging_config` is the ``dictConfig`` it is given instead of its coloured console
handler, so faust's own records come out through ``formatter`` too. The command line
passes the agent's formatter (``agents.logs.JsonFormatter``): ``pipeline`` itself does not
import ``agents``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["logging_config"]


def logging_config(level: str, formatter: Callable[[], logging.Formatter]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": formatter}},
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
