"""FastProtocol reads server answers exactly as aioimaplib's own reader, however cut."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aioimaplib import aioimaplib
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.imap import parse
from agents.imap.protocol import FastProtocol

_TAG_PLACEHOLDER = b"@TAG@"


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _answer(bodies: list[bytes], flags_between: bool) -> bytes:
    out = bytearray()
    for n, body in enumerate(bodies, 1):
        out += b"* %d FETCH (UID %d INTERNALDATE " % (n, 100 + n)
        out += b'"26-Nov-2026 12:12:37 +0000" BODY[] {%d}\r\n' % len(body)
        out += body + b")\r\n"
        if flags_between:
            out += b"* %d FETCH (FLAGS (\\Seen))\r\n" % n
    out += _TAG_PLACEHOLDER + b" OK Fetch completed (0.001 + 0.000 secs).\r\n"
    return bytes(out)


async def _read(protocol_class: Any, answer: bytes, cuts: list[int]) -> Any:
    protocol = protocol_class(asyncio.get_running_loop(), None)
    protocol.connection_made(_Transport())
    protocol.state = aioimaplib.SELECTED
    task = asyncio.ensure_future(protocol.fetch("1:*", "(UID INTERNALDATE BODY.PEEK[])"))
    await asyncio.sleep(0)
    tag = protocol.transport.written[-1].split(b" ", 1)[0]
    data = answer.replace(_TAG_PLACEHOLDER, tag)
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(edges):
        protocol.data_received(data[start:stop])
    return await asyncio.wait_for(task, 5)


_bodies = st.lists(
    st.binary(max_size=300).map(lambda b: b.replace(b"\r\n", b"\n") + b"\r\nend {3}\r\n"),
    min_size=0,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(bodies=_bodies, cuts=st.lists(st.integers(min_value=0), max_size=40), flags=st.booleans())
def test_same_response_as_aioimaplib_for_any_chunking(
    bodies: list[bytes], cuts: list[int], flags: bool
) -> None:
    answer = _answer(bodies, flags)

    async def both() -> tuple[Any, Any]:
        return (
            await _read(aioimaplib.IMAP4ClientProtocol, answer, [len(answer) + 1]),
            await _read(FastProtocol, answer, cuts),
        )

    reference, fast = asyncio.run(both())
    assert fast.result == reference.result == "OK"
    assert fast.lines == reference.lines
    assert [type(x) for x in fast.lines] == [type(x) for x in reference.lines]
    assert [m.raw for m in parse.messages(fast.lines)] == bodies


def test_ten_thousand_lines_in_one_chunk_do_not_recurse() -> None:
    """aioimaplib recursed once per line (RecursionError past ~1,000 in one chunk)."""
    answer = b"".join(b"* %d FETCH (UID %d RFC822.SIZE 10)\r\n" % (n, n) for n in range(1, 10_001))
    answer += _TAG_PLACEHOLDER + b" OK done\r\n"
    response = asyncio.run(_read(FastProtocol, answer, []))
    assert parse.sizes(response.lines)[-1] == (10_000, 10)
    assert len(parse.sizes(response.lines)) == 10_000
