"""pectrack: the command line that wires the ingest agents and the stream processors.

``python -m pectrack`` is the ``pectrack`` command (:mod:`pectrack.cli`).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed distribution only when asked
        from pipeline.contracts.build_info import version_string  # noqa: PLC0415

        return version_string()
    raise AttributeError(name)
