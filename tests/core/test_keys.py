"""Correlation keys: normalised Message-IDs as real receipts carry them."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.keys import (
    correlation_key,
    normalise_address,
    normalise_identificativo,
    normalise_msgid,
)


def test_msgid_whitespace_and_brackets() -> None:
    """Folding whitespace is removed; brackets are kept or added; case is preserved."""
    assert normalise_msgid(" <CAF=9x+Ab@mail.gmail.com>\r\n ") == "<CAF=9x+Ab@mail.gmail.com>"
    folded = "<long-local-part\r\n @client.example>"
    assert normalise_msgid(folded) == "<long-local-part@client.example>"
    assert normalise_msgid("bare@client") == "<bare@client>"
    assert normalise_msgid("<Abc@X>") != normalise_msgid("<abc@X>")
    assert normalise_msgid("") is None
    assert normalise_msgid("<>") is None


def test_daticert_and_header_forms_agree() -> None:
    """The daticert form (unescaped by the XML reader) and the header form give one key."""
    header = "<20240301090000.12345@client.example.it>"
    daticert_text = "&lt;20240301090000.12345@client.example.it&gt;".replace("&lt;", "<").replace(
        "&gt;", ">"
    )
    assert normalise_msgid(header) == normalise_msgid(daticert_text)


def test_identificativo_is_bare() -> None:
    """Provider ids compare without brackets (Message-ID form vs daticert form)."""
    assert (
        normalise_identificativo("<opec288.20181113163926.12345.67.1.59@pec.aruba.it>")
        == "opec288.20181113163926.12345.67.1.59@pec.aruba.it"
    )


def test_key_is_scoped_by_mailbox() -> None:
    """The same msgid from two sending mailboxes gives two keys; address case is folded."""
    assert correlation_key("A@PEC.it", "<1@c>") == correlation_key("a@pec.it", " <1@c> ")
    assert correlation_key("a@pec.it", "<1@c>") != correlation_key("b@pec.it", "<1@c>")
    assert normalise_address(" <Ufficio@PEC.Example.it> ") == "ufficio@pec.example.it"


_SPACES = [chr(c) for c in range(0x3000 + 1) if chr(c).isspace()]


@given(st.lists(st.one_of(st.sampled_from(_SPACES), st.characters()), max_size=40).map("".join))
def test_whitespace_removed_as_the_regex_removes_it(value: str) -> None:
    """Ids lose exactly what ``re.sub(r"\\s+", "", ...)`` removes (Unicode spaces too)."""
    compact = re.sub(r"\s+", "", value)[:998]
    expected = None if not compact or compact == "<>" else compact
    if expected is not None:
        expected = ("" if expected.startswith("<") else "<") + expected
        expected += "" if expected.endswith(">") else ">"
    assert normalise_msgid(value) == expected
    bare = compact.strip("<>")
    assert normalise_identificativo(value) == (bare or None)
