"""Hardened expat for XML that comes from outside (daticert.xml, the SdI's files).

Hardened the way defusedxml does it: any entity declaration (internal or external,
general or parameter: billion laughs, quadratic blowup, XXE) stops the parse, and so
does any external reference; parameter entities are never read. Callbacks stop a parse
with :class:`RefusedError`, which :func:`parse` turns into the reader's defect::

    parser = hardened_parser(entity=..., external=...)       # the reader's own codes
    parser.StartElementHandler = ...
    defects = parse(parser, data, malformed=DefectCode.XML_MALFORMED)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any
from xml.parsers import expat

from pipeline.core.defects import DefectCode
from pipeline.core.model import Defect

__all__ = ["RefusedError", "hardened_parser", "parse"]


class RefusedError(Exception):
    """Raised inside expat callbacks to stop parsing; :func:`parse` catches it."""

    def __init__(self, code: DefectCode, detail: str) -> None:
        super().__init__(code)
        self.defect = Defect(code, detail)


def hardened_parser(
    *, entity: DefectCode, external: DefectCode, namespace_separator: str | None = None
) -> Any:
    """An expat parser that refuses entity declarations (``entity``) and external
    references (``external``) and never reads parameter entities."""
    refuse_entity, refuse_external = _refusers(entity, external)
    parser = expat.ParserCreate(namespace_separator=namespace_separator)
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


@cache
def _refusers(
    entity: DefectCode, external: DefectCode
) -> tuple[Callable[..., None], Callable[..., int]]:
    """The two refusing handlers for a reader's codes, made once per reader."""

    def refuse_entity(*_args: object) -> None:
        raise RefusedError(entity, "entity declarations are not allowed")

    def refuse_external(*_args: object) -> int:
        raise RefusedError(external, "external references are not allowed")

    return refuse_entity, refuse_external


def parse(parser: Any, data: bytes, *, malformed: DefectCode) -> tuple[Defect, ...]:
    """Parse ``data`` whole; ``()``, or the one defect that stopped it."""
    try:
        parser.Parse(data, True)
    except RefusedError as refused:
        return (refused.defect,)
    except (expat.ExpatError, ValueError, UnicodeError, LookupError) as exc:
        # LookupError: an unknown encoding
        return (Defect(malformed, str(exc)[:200]),)
    return ()
