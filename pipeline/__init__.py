"""pectrack's PEC logic and stream processors.

Layers, each importing only those below it (import-linter enforces it, see
docs/architecture.md): :mod:`pipeline.core` (pure PEC logic) < :mod:`pipeline.contracts`
(records, topics, metrics) < :mod:`pipeline.kafka`, :mod:`pipeline.trust` (client
plumbing, trust files) < :mod:`pipeline.streams` (faust workers). :mod:`pipeline.simulate`
makes synthetic signed traffic; :mod:`pipeline.dev` is tooling behind the ``dev`` extra.
Nothing here imports :mod:`agents`; :mod:`pectrack.cli` wires both.
"""
