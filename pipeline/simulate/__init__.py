"""Synthetic PEC providers: a test PKI, signed envelopes and receipts, whole mailboxes.

Used by the parser and verifier tests (``tests/factories.py``), the stream-processing
integration tests (``expected_states`` is their oracle), the demo and the benchmarks::

    from pipeline.simulate import generate_traffic, expected_states, write_maildir
    items = generate_traffic(seed=7, messages=100, mailboxes=4, start=datetime(2024, 3, 1))
    write_maildir(items, Path("/tmp/pec"))

Only :mod:`pipeline.simulate.files` writes files; everything else is pure.
"""

from pipeline.simulate.ca import Identity, KeyAlgorithm, Pki, default_pki
from pipeline.simulate.cms import DigestAlgorithm, sign_detached
from pipeline.simulate.files import write_eml, write_maildir
from pipeline.simulate.provider import (
    Fault,
    Notice,
    Provider,
    catalogue,
    forge,
    rewrite_header,
    strip_signature,
    tamper_body,
)
from pipeline.simulate.render import Attachment, OriginalMessage, RenderOptions, render_original
from pipeline.simulate.traffic import (
    TrafficItem,
    TrafficMix,
    Truth,
    expected_states,
    generate_traffic,
)

__all__ = [
    "Attachment",
    "DigestAlgorithm",
    "Fault",
    "Identity",
    "KeyAlgorithm",
    "Notice",
    "OriginalMessage",
    "Pki",
    "Provider",
    "RenderOptions",
    "TrafficItem",
    "TrafficMix",
    "Truth",
    "catalogue",
    "default_pki",
    "expected_states",
    "forge",
    "generate_traffic",
    "render_original",
    "rewrite_header",
    "sign_detached",
    "strip_signature",
    "tamper_body",
    "write_eml",
    "write_maildir",
]
