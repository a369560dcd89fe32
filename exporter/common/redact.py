"""Keeping API keys out of text that leaves the process: log lines and error details.

A key is replaced wherever it occurs. Text is also trimmed, by the exporter to keep a log line
short and by an upstream that echoes the key into a message of limited length; a trim can leave
the first part of a key at the end of the text, so such a tail is replaced too. Redact first,
then trim, then redact the tail: trimming first would cut the key in two, and neither half
would be found any more.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

REDACTED = "<redacted>"
# A shorter tail tells next to nothing about a key and would match the end of ordinary words.
MIN_TAIL = 4


def redact(text: str, secrets: Collection[str]) -> str:
    """The text with every secret, and a tail that begins a secret, replaced by <redacted>."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    for secret in secrets:
        text = _redact_tail(text, secret)
    return text


def redact_and_cut(text: str, secrets: Iterable[str], limit: int) -> str:
    """At most about `limit` characters of the text, with no secret nor the start of one left."""
    secrets = tuple(secrets)
    text = redact(text, secrets)
    if len(text) <= limit:
        return text
    return redact(text[:limit], secrets)


def _redact_tail(text: str, secret: str) -> str:
    """The text with its ending replaced if that ending is the start of the secret."""
    if len(secret) <= MIN_TAIL:
        return text  # the whole secret is replaced above; a part of it is too short to matter
    start = max(0, len(text) - len(secret) + 1)  # a tail as long as the key was replaced above
    head = secret[:MIN_TAIL]
    at = text.find(head, start)
    while at != -1:
        if secret.startswith(text[at:]):
            return text[:at] + REDACTED
        at = text.find(head, at + 1)
    return text
