"""Check container commands against the real ``pectrack`` argument parser."""

from __future__ import annotations

import contextlib
import io
import shlex

from pectrack.cli import build_parser


def pectrack_argv(command: list[str] | str, entrypoint: list[str] | None = None) -> list[str]:
    """The arguments after ``pectrack`` of a container's entrypoint + command.

    ``["agent", "--config", ...]`` with the image's ``pectrack`` entrypoint, or a shell line
    ``sh -c 'exec pectrack worker --web-host "$(hostname -i)"'``.
    """
    words = [*(entrypoint or ["pectrack"]), *([command] if isinstance(command, str) else command)]
    if words[0].endswith("sh") and words[1].startswith("-"):
        words = shlex.split(" ".join(words[2:]).replace("$$", "$"))
    words = [w for w in words if w != "exec"]
    assert "pectrack" in words, f"not a pectrack command: {words}"
    return words[words.index("pectrack") + 1 :]


def parse_error(argv: list[str]) -> str | None:
    """``None`` if ``pectrack <argv>`` parses, else argparse's message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(argv)
    except SystemExit:
        return stderr.getvalue().strip() or "rejected"
    return None
