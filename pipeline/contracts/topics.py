"""Topic names and their defaults: one list for the agents, the workers and deployment.

Every name is a setting (``--raw-topic``, ``[kafka] topic``); these are the documented
defaults. A topic the project creates gets :data:`DEFAULT_PARTITIONS` partitions unless
the operator says otherwise; compacted topics are listed in :data:`COMPACTED`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AGENT_CURSORS",
    "COMPACTED",
    "DEFAULT_PARTITIONS",
    "DEFAULT_REPLICATION",
    "DLQ",
    "INBOUND",
    "MESSAGE_STATE",
    "RAW",
    "RAW_DEAD_LETTER",
    "RECEIPTS",
    "SDI_CHECKS",
    "SDI_INVOICE_STATES",
    "SDI_NOTIFICATIONS",
    "STATE_CHANGES",
    "SUBMISSIONS",
    "durability_configs",
]

# Partitions bound the parallelism of a consumer group: 12 lets 1, 2, 3, 4, 6 or 12
# workers share the load evenly. Changing it later moves keys between partitions.
DEFAULT_PARTITIONS: Final = 12

# Written by the agents.
RAW: Final = "pec.raw"  # raw mail: key = mailbox id, headers: pipeline.contracts.raw
RAW_DEAD_LETTER: Final = "pec.raw.deadletter"  # messages the agent will not publish whole
AGENT_CURSORS: Final = "pec.agent.cursors"  # compacted: UIDVALIDITY + last UID per folder

# Read and written by the workers.
SUBMISSIONS: Final = "pec.submissions"  # input from a sending system (optional)
RECEIPTS: Final = "pec.receipts"  # internal: observations keyed by correlation key
STATE_CHANGES: Final = "pec.state-changes"  # output: one CloudEvent per transition
MESSAGE_STATE: Final = "pec.message-state"  # output, compacted: latest state per message
DLQ: Final = "pec.dlq"  # unroutable input, reason in headers
INBOUND: Final = "pec.inbound"  # output: one CloudEvent per envelope received in INBOX
SDI_NOTIFICATIONS: Final = "sdi.notifications"  # output: SdI notifications, invoices received
SDI_INVOICE_STATES: Final = "sdi.invoice-states"  # output: one CloudEvent per invoice transition
SDI_CHECKS: Final = "sdi.checks"  # internal: retention checks of invoices, keyed by invoice

COMPACTED: Final = frozenset({AGENT_CURSORS, MESSAGE_STATE})

# Replicas of every topic pectrack creates: never 1 by default. A cluster with fewer
# brokers refuses, and the agent and the workers say so rather than lower it.
DEFAULT_REPLICATION: Final = 3


def durability_configs(replication: int) -> dict[str, str]:
    """Topic configs for ``replication`` replicas: from 3 on ``min.insync.replicas = 2``,
    so that an ``acks=all`` write survives the loss of any one broker."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}
