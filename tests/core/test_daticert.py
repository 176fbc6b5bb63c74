"""daticert.xml: the fields, the quirks of real providers, and hostile XML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.daticert import parse_daticert, parse_timestamp

ARUBA = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE postacert SYSTEM "Daticert.dtd">
<postacert tipo="avvenuta-consegna" errore="nessuno">
  <intestazione>
    <mittente>sender@pec.example.it</mittente>
    <destinatari tipo="certificato">to@pec.other.it</destinatari>
    <destinatari tipo="esterno">someone@gmail.com</destinatari>
    <risposte>sender@pec.example.it</risposte>
    <oggetto>Fattura n. 42 &amp; allegati</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>ARUBA PEC S.p.A.</gestore-emittente>
    <data zona="+0100">
      <giorno>13/11/2018</giorno>
      <ora>16:39:27</ora>
    </data>
    <identificativo>opec288.20181113163926.12345.67.1.59@pec.aruba.it</identificativo>
    <msgid>&lt;original-id@client&gt;</msgid>
    <ricevuta tipo="completa" />
    <consegna>to@pec.other.it</consegna>
  </dati>
</postacert>
"""


def test_reads_every_field() -> None:
    """A real-shaped delivery daticert (with the old DOCTYPE line) yields all fields."""
    dc, defects = parse_daticert(ARUBA)
    assert defects == ()
    assert dc is not None
    assert dc.tipo == "avvenuta-consegna"
    assert dc.errore == "nessuno"
    assert dc.mittente == "sender@pec.example.it"
    assert dc.destinatari == (
        ("to@pec.other.it", "certificato"),
        ("someone@gmail.com", "esterno"),
    )
    assert dc.oggetto == "Fattura n. 42 & allegati"
    assert dc.gestore == "ARUBA PEC S.p.A."
    assert dc.timestamp == datetime(2018, 11, 13, 16, 39, 27, tzinfo=timezone(timedelta(hours=1)))
    assert dc.identificativo == "opec288.20181113163926.12345.67.1.59@pec.aruba.it"
    assert dc.msgid == "<original-id@client>"
    assert dc.ricevuta == "completa"
    assert dc.consegna == "to@pec.other.it"


def test_latin1_encoding() -> None:
    """An ISO-8859-1 daticert decodes its accented subject."""
    xml = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><postacert tipo="accettazione" '
        'errore="nessuno"><intestazione><oggetto>Perché</oggetto></intestazione></postacert>'
    ).encode("latin-1")
    dc, defects = parse_daticert(xml)
    assert defects == ()
    assert dc is not None
    assert dc.oggetto == "Perché"


def test_billion_laughs_is_refused() -> None:
    """Entity expansion (billion laughs) is refused before any expansion."""
    xml = b"""<?xml version="1.0"?>
<!DOCTYPE postacert [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<postacert tipo="accettazione"><intestazione><oggetto>&c;</oggetto></intestazione></postacert>"""
    dc, defects = parse_daticert(xml)
    assert dc is None
    assert [d.code for d in defects] == ["daticert-entity-forbidden"]


def test_external_entity_is_refused() -> None:
    """An external entity (XXE reading a local file) is refused."""
    xml = b"""<?xml version="1.0"?>
<!DOCTYPE postacert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<postacert tipo="accettazione"><dati><msgid>&xxe;</msgid></dati></postacert>"""
    dc, defects = parse_daticert(xml)
    assert dc is None
    assert defects[0].code == "daticert-entity-forbidden"


def test_external_parameter_entity_is_refused() -> None:
    """A parameter entity pointing outside is refused, never fetched."""
    xml = b"""<?xml version="1.0"?>
<!DOCTYPE postacert [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<postacert tipo="accettazione"/>"""
    dc, defects = parse_daticert(xml)
    assert dc is None
    assert defects[0].code in {"daticert-entity-forbidden", "daticert-external-reference"}


def test_deep_nesting_is_refused() -> None:
    """Nesting deeper than the cap is a defect, not a recursion."""
    xml = b"<postacert tipo='accettazione'>" + b"<a>" * 10000 + b"</a>" * 10000 + b"</postacert>"
    dc, defects = parse_daticert(xml)
    assert dc is None
    assert defects[0].code == "daticert-too-deep"


def test_malformed_and_wrong_root() -> None:
    """Broken XML and a foreign root element are defects."""
    assert parse_daticert(b"<postacert tipo='x'>")[1][0].code == "daticert-malformed"
    assert parse_daticert(b"<html/>")[1][0].code == "daticert-malformed"
    assert parse_daticert(b"")[1][0].code == "daticert-malformed"


def test_unknown_encoding_is_a_defect() -> None:
    """An XML declaration naming an unknown encoding is malformed, not an exception."""
    dc, defects = parse_daticert(b'<?xml version="1.0" encoding="YTF-8"?><postacert tipo="x"/>')
    assert dc is None
    assert defects[0].code == "daticert-malformed"


def test_bad_timestamp_is_a_defect() -> None:
    """A timestamp that does not parse leaves ``timestamp`` empty and says why."""
    xml = (
        b"<postacert tipo='accettazione'><dati><data zona='CET'><giorno>31/02/2020</giorno>"
        b"<ora>25:00:00</ora></data></dati></postacert>"
    )
    dc, defects = parse_daticert(xml)
    assert dc is not None
    assert dc.timestamp is None
    assert defects[0].code == "daticert-bad-timestamp"


def test_timestamp_zones() -> None:
    """``zona`` may be +0100, +0200 or -05:00."""
    assert parse_timestamp("01/07/2023", "10:00:00", "+0200") == datetime(
        2023, 7, 1, 8, 0, tzinfo=UTC
    )
    assert parse_timestamp("01/07/2023", "10:00:00", "-05:00") == datetime(
        2023, 7, 1, 15, 0, tzinfo=UTC
    )
    assert parse_timestamp("01/07/2023", "10:00:00", "") is None


@given(st.binary(max_size=2048))
def test_never_raises_on_bytes(data: bytes) -> None:
    """Any bytes give a result or a defect, never an exception."""
    dc, defects = parse_daticert(data)
    assert dc is not None or defects


@given(st.text(max_size=300))
def test_never_raises_inside_a_field(text: str) -> None:
    """Arbitrary text inside the document is read back or reported, never raised."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
    head, tail = b"<postacert tipo='accettazione'><dati><msgid>", b"</msgid></dati></postacert>"
    dc, defects = parse_daticert(head + escaped + tail)
    assert dc is not None or defects


_CHUNKY = st.lists(
    st.sampled_from(
        ["\n", "  ", "&amp;", "&#32;", "x", "<a>", "</a>", "<mittente>", "</mittente>", "é"]
    ),
    max_size=80,
)


@given(_CHUNKY, st.sampled_from(["intestazione", "dati"]))
def test_direct_text_appends_read_what_the_capped_handler_reads(
    pieces: list[str], section: str
) -> None:
    """Small documents let expat append text itself: the same result as the capped handler."""
    from pipeline.core.daticert import _parse  # noqa: PLC0415 - the two text handlers

    body = "".join(pieces).encode()
    xml = b"<postacert tipo='accettazione'><" + section.encode() + b">" + body
    xml += b"</" + section.encode() + b"><dati><msgid>" + body + b"</msgid></dati></postacert>"
    assert _parse(xml, direct_text=True) == _parse(xml, direct_text=False)
    assert parse_daticert(xml) == _parse(xml, direct_text=False)


def test_chunk_cap_still_applies_to_large_documents() -> None:
    """Over 4096 bytes the capped handler runs: 5000 space references keep 4096 chunks."""
    spaces = b"&#32;" * 5000
    xml = b"<postacert tipo='accettazione'><intestazione><mittente>" + spaces
    xml += b"x</mittente></intestazione></postacert>"
    dc, _ = parse_daticert(xml)
    assert dc is not None
    assert dc.mittente is None  # the cap kept only spaces; "x" came after it


def _parse_timestamp_uncached(giorno: str, ora: str, zona: str) -> datetime | None:
    """The former parse_timestamp (a new timezone every call), the oracle below."""
    import re  # noqa: PLC0415

    zone = re.match(r"^([+-])(\d{2}):?(\d{2})$", zona.strip()) if zona else None
    try:
        if zone is None:
            return None
        sign = -1 if zone.group(1) == "-" else 1
        offset = timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3)))
        day, month, year = (int(x) for x in giorno.strip().split("/"))
        hour, minute, second = (int(x) for x in ora.strip().split(":"))
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(sign * offset))
    except (ValueError, OverflowError):
        return None


@given(
    st.from_regex(r"\A ?[0-9]{1,2}/[0-9]{1,2}/[0-9]{1,5} ?\Z") | st.text(max_size=12),
    st.from_regex(r"\A[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}\Z") | st.text(max_size=10),
    st.from_regex(r"\A ?[+-][0-9]{2}:?[0-9]{2} ?\Z") | st.text(max_size=20),
)
def test_cached_zones_read_like_before(giorno: str, ora: str, zona: str) -> None:
    """Zones parsed once and shared: the same datetime (or None) as a fresh parse."""
    got, expected = parse_timestamp(giorno, ora, zona), _parse_timestamp_uncached(giorno, ora, zona)
    assert got == expected
    assert repr(got) == repr(expected)  # the same wall time and offset, not only the instant
