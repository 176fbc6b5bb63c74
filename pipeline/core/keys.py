"""Correlation keys: how a receipt finds the message it is about.

Every receipt carries the ORIGINAL client Message-ID twice: in the signed daticert
``<msgid>&lt;id@client&gt;</msgid>`` and in the unsigned ``X-Riferimento-Message-ID``
header. Providers rewrite the envelope's own Message-ID to their ``identificativo``
(``opec288.20181113163926.12345.67.1.59@pec.aruba.it``), which is kept as a secondary key.

Normalisation: all whitespace removed (header folding can split a long id), angle
brackets kept (added when a provider dropped them), case preserved — the local part of a
Message-ID is case-sensitive, and so are real receipts' ids (``<CAF=3D9x...@mail.gmail.com>``).
"""

from __future__ import annotations

MAX_ID_CHARS = 998  # RFC 5322 line length: anything longer is not a Message-ID


def normalise_msgid(value: str | None) -> str | None:
    """``" <abc@client>\\r\\n "`` -> ``"<abc@client>"``; ``abc@client`` -> ``"<abc@client>"``."""
    if value is None:
        return None
    compact = "".join(value.split())[:MAX_ID_CHARS]  # what re's \s matches, str.split splits
    if not compact or compact == "<>":
        return None
    if not compact.startswith("<"):
        compact = "<" + compact
    if not compact.endswith(">"):
        compact += ">"
    return compact


def normalise_identificativo(value: str | None) -> str | None:
    """Provider ids appear bare in daticert and bracketed as Message-ID: keep them bare."""
    if value is None:
        return None
    compact = "".join(value.split())[:MAX_ID_CHARS].strip("<>")
    return compact or None


def normalise_address(value: str | None) -> str | None:
    """Mailbox addresses compare case-insensitively in practice: lower-case them."""
    if value is None:
        return None
    compact = value.strip().strip("<>").strip().lower()
    return compact or None


def correlation_key(mailbox: str, msgid: str) -> str:
    """The key a sent message and all its receipts share: the sending mailbox + original id.

    >>> correlation_key("Ufficio@PEC.example.it", "<42@client>")
    'ufficio@pec.example.it <42@client>'
    """
    return f"{normalise_address(mailbox) or ''} {normalise_msgid(msgid) or ''}"
