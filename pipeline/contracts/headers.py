"""Kafka record headers as every module passes them: ``(name, value)`` pairs, in order."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CONTENT_TYPE_HEADER", "HEADER_PREFIX", "Headers"]

Headers = Sequence[tuple[str, bytes]]

# The CloudEvents Kafka binding (pipeline.contracts.cloudevents): the structured mode's
# content type, and the prefix of the binary mode's attribute headers.
CONTENT_TYPE_HEADER = "content-type"
HEADER_PREFIX = "ce_"
