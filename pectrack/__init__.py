"""pectrack: the command line that wires the ingest agents and the stream processors.

``python -m pectrack`` is the ``pectrack`` command (:mod:`pectrack.cli`).
"""

from importlib import metadata

try:
    __version__ = metadata.version("pectrack")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
