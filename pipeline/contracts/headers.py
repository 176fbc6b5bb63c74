"""Kafka record headers as every module passes them: ``(name, value)`` pairs, in order."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Headers"]

Headers = Sequence[tuple[str, bytes]]
