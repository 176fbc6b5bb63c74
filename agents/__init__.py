"""The IMAP ingest agent: reads PEC mailboxes read-only and publishes every message to
``pec.raw`` (:mod:`pipeline.contracts.raw`), with resumable per-folder cursors.

Pure planning (:mod:`~agents.config`, :mod:`~agents.cursor`, :mod:`~agents.fetch_batches`,
:mod:`~agents.records`, :mod:`~agents.shard`, :mod:`agents.imap.parse`) around thin
adapters (:mod:`agents.imap.session` for aioimaplib, :mod:`~agents.publish` for aiokafka,
:mod:`~agents.ingest` and :mod:`~agents.agent` for the asyncio tasks).
"""
