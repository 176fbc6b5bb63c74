"""IMAP side of the agent: response parsing (pure) and the aioimaplib session adapter."""
