"""daticert.xml: the provider-signed, authoritative certification data of a PEC message.

::

    <postacert tipo="avvenuta-consegna" errore="nessuno">
      <intestazione>
        <mittente>sender@pec.example.it</mittente>
        <destinatari tipo="certificato">to@pec.other.it</destinatari>
        <oggetto>Invoice 42</oggetto>
      </intestazione>
      <dati>
        <gestore-emittente>ARUBA PEC S.p.A.</gestore-emittente>
        <data zona="+0100"><giorno>13/11/2018</giorno><ora>16:39:27</ora></data>
        <identificativo>opec288.20181113163926.12345.67.1.59@pec.aruba.it</identificativo>
        <msgid>&lt;original-id@client&gt;</msgid>
        <ricevuta tipo="completa"/>
        <consegna>to@pec.other.it</consegna>
      </dati>
    </postacert>

It comes from outside, so it is read with expat hardened the way defusedxml does it: any
entity declaration or external reference is refused (no billion laughs, no XXE, no DTD
fetch), the document is capped in size and depth, and only the fields above are kept.
A ``<!DOCTYPE postacert SYSTEM "Daticert.dtd">`` line, which older providers emit, is
allowed: expat never fetches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from pipeline.core.defects import DefectCode
from pipeline.core.model import Defect
from pipeline.core.xmlguard import RefusedError, hardened_parser, parse

MAX_DEPTH = 16
MAX_FIELD_CHARS = 4096
_MAX_CHUNKS = 4096  # text chunks kept per element (bounds memory on hostile input)

_ZONE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclass(frozen=True, slots=True)
class Daticert:
    """The fields of daticert.xml the tracker uses; absent ones are ``None`` / empty."""

    tipo: str | None
    errore: str | None
    mittente: str | None
    destinatari: tuple[tuple[str, str | None], ...]  # (address, tipo attribute)
    oggetto: str | None
    gestore: str | None
    timestamp: datetime | None
    identificativo: str | None
    msgid: str | None
    ricevuta: str | None
    consegna: str | None
    errore_esteso: str | None


_TEXT_FIELDS = {
    ("postacert", "intestazione", "mittente"): "mittente",
    ("postacert", "intestazione", "oggetto"): "oggetto",
    ("postacert", "dati", "gestore-emittente"): "gestore",
    ("postacert", "dati", "identificativo"): "identificativo",
    ("postacert", "dati", "msgid"): "msgid",
    ("postacert", "dati", "consegna"): "consegna",
    ("postacert", "dati", "errore-esteso"): "errore_esteso",
    ("postacert", "dati", "data", "giorno"): "giorno",
    ("postacert", "dati", "data", "ora"): "ora",
}
_DESTINATARI = ("postacert", "intestazione", "destinatari")


def _tree(paths: list[tuple[str, ...]]) -> dict[str, dict[str, str]]:
    """Element path -> {child name: child path} for every prefix of the paths read;
    paths as ``"postacert/dati/data"`` (a str keeps its hash: one cheap lookup each)."""
    tree: dict[str, dict[str, str]] = {}
    for path in paths:
        for i in range(1, len(path)):
            tree.setdefault("/".join(path[:i]), {})[path[i]] = "/".join(path[: i + 1])
    return tree


_ROOT = "postacert"
_RICEVUTA = "postacert/dati/ricevuta"
_DATA = "postacert/dati/data"
_DESTINATARI_NODE = "/".join(_DESTINATARI)
_FIELD_AT = {"/".join(path): key for path, key in _TEXT_FIELDS.items()}
# The elements below which something is read. Every other element is ``None`` on the
# stack, and so is everything inside it.
_CHILDREN = _tree([*_TEXT_FIELDS, _DESTINATARI, tuple(_RICEVUTA.split("/"))])
_NO_CHILDREN: dict[str, str] = {}
_WITH_ATTRIBUTES = frozenset({_ROOT, _RICEVUTA, _DATA, _DESTINATARI_NODE})


class _Collector:
    """Expat callbacks that keep a path stack and collect the wanted fields' text.

    The stack holds each open element's path when it leads to a field read here, else
    ``None``; the text of an element is what came since the last start or end tag.
    """

    def __init__(self) -> None:
        self.path: list[str | None] = []
        self.text: list[str] = []
        self.fields: dict[str, str] = {}
        self.attrs: dict[str, str] = {}
        self.destinatari: list[tuple[str, str | None]] = []
        self.destinatario_tipo: str | None = None
        self.root: str | None = None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        stack = self.path
        if stack:
            parent = stack[-1]
            node = None if parent is None else _CHILDREN.get(parent, _NO_CHILDREN).get(name)
        else:
            self.root = name
            node = _ROOT if name == "postacert" else None
        stack.append(node)
        if len(stack) > MAX_DEPTH:
            raise RefusedError(DefectCode.DATICERT_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}")
        if node in _WITH_ATTRIBUTES:
            if node == _ROOT:
                self.attrs["tipo"] = attributes.get("tipo", "")
                self.attrs["errore"] = attributes.get("errore", "")
            elif node == _RICEVUTA:
                self.attrs["ricevuta"] = attributes.get("tipo", "")
            elif node == _DATA:
                self.attrs["zona"] = attributes.get("zona", "")
            else:
                self.destinatario_tipo = attributes.get("tipo")
        self.text.clear()

    def end(self, name: str) -> None:
        node = self.path.pop()
        if node is not None:
            key = _FIELD_AT.get(node)
            if key is not None:
                if key not in self.fields:
                    self.fields[key] = "".join(self.text).strip()[:MAX_FIELD_CHARS]
            elif node == _DESTINATARI_NODE:
                value = "".join(self.text).strip()
                if value:
                    self.destinatari.append((value[:MAX_FIELD_CHARS], self.destinatario_tipo))
        self.text.clear()

    def data(self, chunk: str) -> None:
        if len(self.text) < _MAX_CHUNKS:
            self.text.append(chunk)


def parse_daticert(data: bytes) -> tuple[Daticert | None, tuple[Defect, ...]]:
    """Read daticert.xml bytes; malformed or hostile XML yields ``None`` and a defect."""
    # Each text chunk comes from at least one byte of the document, so in one of at most
    # _MAX_CHUNKS bytes the cap cannot be reached: there the parser appends to the list
    # itself, without a Python call per chunk (a tenth of the parse).
    return _parse(data, direct_text=len(data) <= _MAX_CHUNKS)


def _parse(data: bytes, *, direct_text: bool) -> tuple[Daticert | None, tuple[Defect, ...]]:
    collector = _Collector()
    parser = hardened_parser(
        entity=DefectCode.DATICERT_ENTITY_FORBIDDEN,
        external=DefectCode.DATICERT_EXTERNAL_REFERENCE,
    )
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text.append if direct_text else collector.data
    defects = parse(parser, data, malformed=DefectCode.DATICERT_MALFORMED)
    if defects:
        return None, defects
    if collector.root != "postacert":
        return None, (Defect(DefectCode.DATICERT_MALFORMED, f"root element is <{collector.root}>"),)
    return _build(collector)


def _build(collector: _Collector) -> tuple[Daticert, tuple[Defect, ...]]:
    fields, attrs = collector.fields, collector.attrs
    defects: list[Defect] = []
    timestamp = None
    if "giorno" in fields or "ora" in fields:
        timestamp = parse_timestamp(
            fields.get("giorno", ""), fields.get("ora", ""), attrs.get("zona", "")
        )
        if timestamp is None:
            defects.append(
                Defect(
                    DefectCode.DATICERT_BAD_TIMESTAMP,
                    f"{fields.get('giorno')!r} {fields.get('ora')!r} zona={attrs.get('zona')!r}",
                )
            )
    daticert = Daticert(
        tipo=attrs.get("tipo") or None,
        errore=attrs.get("errore") or None,
        mittente=fields.get("mittente") or None,
        destinatari=tuple(collector.destinatari),
        oggetto=fields.get("oggetto"),
        gestore=fields.get("gestore") or None,
        timestamp=timestamp,
        identificativo=fields.get("identificativo") or None,
        msgid=fields.get("msgid") or None,
        ricevuta=attrs.get("ricevuta") or None,
        consegna=fields.get("consegna") or None,
        errore_esteso=fields.get("errore_esteso") or None,
    )
    return daticert, tuple(defects)


def parse_timestamp(giorno: str, ora: str, zona: str) -> datetime | None:
    """``13/11/2018`` ``16:39:27`` ``+0100`` -> an aware datetime; ``None`` if malformed."""
    zone = _cached_zone(zona) if len(zona) <= _ZONE_CACHE_CHARS else _zone(zona)
    if zone is None:
        return None
    try:
        day, month, year = map(int, giorno.strip().split("/"))
        hour, minute, second = map(int, ora.strip().split(":"))
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except (ValueError, OverflowError):
        return None


_ZONE_CACHE_CHARS = 16  # "+0100", " +01:00 ": a provider uses one or two; others parse anew


def _zone(zona: str) -> timezone | None:
    """``+0100`` or ``-05:00`` -> a fixed offset; ``None`` if malformed or a day or more."""
    zone = _ZONE.match(zona.strip()) if zona else None
    if zone is None:
        return None
    sign = -1 if zone.group(1) == "-" else 1
    try:
        return timezone(sign * timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3))))
    except (ValueError, OverflowError):
        return None


_cached_zone = lru_cache(maxsize=64)(_zone)
