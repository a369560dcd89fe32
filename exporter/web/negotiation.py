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
