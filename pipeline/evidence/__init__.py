"""Evidence: the archive of signed PEC messages, its writer, retrieval and the dossier.

``archive`` (file:// and s3:// stores, idempotent writes), ``writer`` (the verify
processor's retrying writer), ``provenance`` (the adapter building
:class:`pipeline.core.provenance.Provenance` from a ``pec.raw`` record), ``dossier`` and
``cli`` (``pectrack evidence``).
"""
