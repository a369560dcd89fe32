"""Helpers every layer above configuration shares: errors, redaction, logs, memos, memory tuning,
WSGI helpers."""
