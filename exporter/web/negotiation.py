"""Content coding of an exposition, chosen from the request's Accept-Encoding (RFC 9110 12.5.3).

Only two codings exist here: `gzip` and `identity` (no coding). Coding names are compared
case-insensitively, `x-gzip` means `gzip`, `*` stands for every coding the header does not name,
and a q-value of 0 means "not acceptable". Without the header a client gets plain text; with
both codings acceptable the client's higher q-value wins, and a tie goes to gzip (what
Prometheus asks for). An element that cannot be read (a malformed q-value) is ignored rather
than guessed at.
"""

from __future__ import annotations

import re

GZIP = "gzip"
IDENTITY = "identity"

# qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")
_ALIASES = {"x-gzip": GZIP}
# identity is acceptable unless excluded; when the client does not rank it, it comes last.
_UNRANKED = 0.0001


def choose_coding(header: str | None) -> str | None:
    """`gzip`, `identity`, or None when the client accepts neither (answer 406)."""
    if header is None:
        return IDENTITY
    weights = _weights(header)
    gzip_q = weights.get(GZIP, weights.get("*", 0.0))
    if IDENTITY in weights:
        identity_q = weights[IDENTITY]
    elif weights.get("*") == 0.0:
        identity_q = 0.0
    else:
        identity_q = _UNRANKED
    if gzip_q > 0 and gzip_q >= identity_q:
        return GZIP
    if identity_q > 0:
        return IDENTITY
    return None


def _weights(header: str) -> dict[str, float]:
    """Coding → q-value for every readable element; a repeated coding keeps its first q."""
    weights: dict[str, float] = {}
    for element in header.split(","):
        name, *params = (part.strip() for part in element.split(";"))
        name = _ALIASES.get(name.lower(), name.lower())
        if not name:
            continue
        q = _q_value(params)
        if q is not None:
            weights.setdefault(name, q)
    return weights


def _q_value(params: list[str]) -> float | None:
    q = 1.0
    for param in params:
        key, sep, value = param.partition("=")
        if key.strip().lower() != "q":
            continue
        value = value.strip()
        if not sep or not _QVALUE.match(value):
            return None
        q = float(value)
    return q


# --- exposition format, from Accept -----------------------------------------------------------

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
# Versions of each media type whose content the exporter's answer is. The exporter's names are
# all of the legacy character set, so its text 0.0.4 is also valid text 1.0.0 content.
_OPENMETRICS_VERSIONS = (None, "1.0.0")
_TEXT_VERSIONS = (None, "0.0.4", "1.0.0")


def choose_format(header: str | None) -> str:
    """`openmetrics` when the client ranks OpenMetrics 1.0.0 at least as high as plain text
    (what Prometheus asks for by default), else `text`.

    Never "not acceptable": a client that names neither format gets text, as Prometheus'
    own client libraries answer it.
    """
    if not header:
        return TEXT
    openmetrics_q = text_q = 0.0
    for element in header.split(","):
        media_type, *params = (part.strip() for part in element.split(";"))
        parsed = _media_params(params)
        if parsed is None:
            continue
        q, version = parsed
        media_type = media_type.lower()
        if media_type == "application/openmetrics-text" and version in _OPENMETRICS_VERSIONS:
            openmetrics_q = max(openmetrics_q, q)
        elif (media_type == "text/plain" and version in _TEXT_VERSIONS) or media_type in (
            "text/*",
            "*/*",
        ):
            text_q = max(text_q, q)
    return OPENMETRICS if openmetrics_q > 0 and openmetrics_q >= text_q else TEXT


def _media_params(params: list[str]) -> tuple[float, str | None] | None:
    """(q, version) of a media range; None when its q-value cannot be read."""
    q, version = 1.0, None
    for param in params:
        key, sep, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "q":
            if not sep or not _QVALUE.match(value):
                return None
            q = float(value)
        elif key == "version":
            version = value
    return q, version
