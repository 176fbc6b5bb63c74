"""The stream processors (faust-streaming): thin adapters around ``pipeline.core``.

    pec.raw ──verify──▶ pec.receipts ──correlate──▶ pec.state-changes
                 │            ▲              └────▶ pec.message-state (compacted)
                 ▼            │
              pec.dlq   pec.submissions (register)       deadlines timer ──▶ pec.receipts

``pec.receipts`` is keyed by the correlation key (sending mailbox + original Message-ID),
so a sent message and all its receipts land in one partition, with one owner of its
table entry.
"""
