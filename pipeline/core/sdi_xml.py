"""A hardened, namespace-aware XML reader for the SdI's files (notifications, invoices).

The SdI's XML comes from outside (an attachment of a PEC message anyone can send), so
it is read the way :mod:`pipeline.core.daticert` reads daticert: expat with every entity
declaration and external reference refused (no billion laughs, no XXE, no DTD fetch),
depth, size and the number of kept values capped. Elements are matched by *local*
name along their path from the root; the namespace of the root is reported, so a
caller can say which one it accepts::

    <types:RicevutaConsegna xmlns:types="http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
                            versione="1.0">
      <IdentificativoSdI>111</IdentificativoSdI> ...

    read_xml(data, wanted={("IdentificativoSdI",)}, group=None)
    -> XmlDocument(root="RicevutaConsegna", namespace="http://www.fatturapa.gov.it/...",
                   attributes={"versione": "1.0"}, values={("IdentificativoSdI",): ["111"]})

``group`` names an element that repeats (``FatturaElettronicaBody``, ``Errore``): the
wanted values under each occurrence are collected apart, in document order.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.defects import DefectCode
from pipeline.core.model import Defect
from pipeline.core.xmlguard import RefusedError, hardened_parser, parse

MAX_DEPTH = 32
MAX_FIELD_CHARS = 4096
MAX_VALUES = 1000  # values kept per document (a lotto of invoices holds several bodies)
_MAX_CHUNKS = 4096
_SEPARATOR = "\x1f"  # between namespace URI and local name (never in either)
XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class XmlDocument:
    """What :func:`read_xml` kept. ``values`` and each group's dict map a path (local
    names from below the root, or from below the group element) to its texts."""

    root: str
    namespace: str
    attributes: dict[str, str]
    values: dict[Path, list[str]]
    groups: tuple[dict[Path, list[str]], ...]
    signed: bool  # an enveloped ds:Signature (XAdES) is present; NOT verified here

    def first(self, path: Path) -> str | None:
        found = self.values.get(path)
        return found[0] if found else None


class _Collector:
    def __init__(self, wanted: frozenset[Path], group: str | None) -> None:
        self.wanted = wanted
        self.group = group
        self.path: list[str] = []
        self.group_depth: int | None = None
        self.text: list[str] = []
        self.root = ""
        self.namespace = ""
        self.attributes: dict[str, str] = {}
        self.values: dict[Path, list[str]] = {}
        self.groups: list[dict[Path, list[str]]] = []
        self.kept = 0
        self.signed = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(_SEPARATOR)
        if not self.root:
            self.root, self.namespace = local, namespace
            self.attributes = {
                k.rpartition(_SEPARATOR)[2]: v[:MAX_FIELD_CHARS] for k, v in attributes.items()
            }
        else:
            self.path.append(local)
        if len(self.path) >= MAX_DEPTH:
            raise RefusedError(DefectCode.XML_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}")
        if namespace == XMLDSIG and local == "Signature":
            self.signed = True
        if self.group is not None and self.group_depth is None and local == self.group:
            self.group_depth = len(self.path)
            self.groups.append({})
        self.text.clear()

    def end(self, _name: str) -> None:
        if not self.path:
            return  # the root closes
        value = "".join(self.text).strip()[:MAX_FIELD_CHARS]
        path = tuple(self.path)
        if self.group_depth is not None:
            inner = path[self.group_depth :]
            if inner and (self.group, *inner) in self.wanted:
                self._keep(self.groups[-1], inner, value)
            if len(self.path) == self.group_depth:
                self.group_depth = None
        if path in self.wanted:
            self._keep(self.values, path, value)
        self.path.pop()
        self.text.clear()

    def _keep(self, into: dict[Path, list[str]], path: Path, value: str) -> None:
        self.kept += 1
        if self.kept > MAX_VALUES:
            raise RefusedError(DefectCode.XML_TOO_MANY_VALUES, f"over {MAX_VALUES} values")
        into.setdefault(path, []).append(value)

    def data(self, chunk: str) -> None:
        if len(self.text) < _MAX_CHUNKS:
            self.text.append(chunk)


def read_xml(
    data: bytes, wanted: frozenset[Path], *, group: str | None = None, max_bytes: int
) -> tuple[XmlDocument | None, tuple[Defect, ...]]:
    """Read ``data``; hostile or malformed XML gives ``None`` and one defect.

    A path in ``wanted`` that starts with ``group`` is collected per occurrence of that
    element (without the group name), the others from below the root.
    """
    if len(data) > max_bytes:
        return None, (Defect(DefectCode.XML_TOO_LARGE, f"{len(data)} bytes, cap {max_bytes}"),)
    collector = _Collector(wanted, group)
    parser = hardened_parser(
        entity=DefectCode.XML_ENTITY_FORBIDDEN,
        external=DefectCode.XML_EXTERNAL_REFERENCE,
        namespace_separator=_SEPARATOR,
    )
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.data
    defects = parse(parser, data, malformed=DefectCode.XML_MALFORMED)
    if defects:
        return None, defects
    document = XmlDocument(
        root=collector.root,
        namespace=collector.namespace,
        attributes=collector.attributes,
        values=collector.values,
        groups=tuple(collector.groups),
        signed=collector.signed,
    )
    return document, ()
