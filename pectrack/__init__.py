"""pectrack: the command line that wires the ingest agents and the stream processors.

``python -m pectrack`` is the ``pectrack`` command (:mod:`pectrack.cli`).
"""

from pipeline.contracts.build_info import version_string

__version__ = version_string()
