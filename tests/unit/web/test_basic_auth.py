"""Basic auth's header rules, in-process: what is parsed at all, and the length it stops at."""

from __future__ import annotations

from exporter.web.auth import BasicAuth
from tests.support.pki import basic_authorization, bcrypt_hash

# bcrypt reads the first 72 bytes of a password: any longer password that starts with this
# one matches its hash, so credentials of any length can be made valid.
PASSWORD = "p" * 72


def credentials_of(size: int) -> bytes:
    """`prom:` and a valid password, `size` bytes in all."""
    return b"prom:" + PASSWORD.encode() + b"x" * (size - 5 - len(PASSWORD))


def test_credentials_of_4096_base64_characters_are_read_and_longer_ones_refused_unread():
    auth = BasicAuth({"prom": bcrypt_hash(PASSWORD).encode()})
    at_limit, over = (
        basic_authorization(credentials_of(3072)),
        basic_authorization(credentials_of(3075)),
    )
    assert (len(at_limit), len(over)) == (6 + 4096, 6 + 4100)
    assert auth.check(at_limit)
    assert not auth.check(over)


def test_other_schemes_empty_or_malformed_credentials_are_refused():
    auth = BasicAuth({"prom": bcrypt_hash(PASSWORD).encode()})
    good = basic_authorization(b"prom:" + PASSWORD.encode())
    assert auth.check(good)
    assert auth.check("basic " + good.split(" ", 1)[1])  # the scheme's case does not matter
    for header in (
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer " + good.split(" ", 1)[1],
        "Basic not-base64!",
        basic_authorization(b"no-colon"),
        basic_authorization(b"prom:wrong"),
        basic_authorization(b"other:" + PASSWORD.encode()),
    ):
        assert not auth.check(header), header
