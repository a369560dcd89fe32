"""The web config file's rate limit, basic auth and headers, applied to every request of the web
listener."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import bcrypt

from exporter.common.wsgi import StartResponse, WsgiApp, text_response
from exporter.config.webconfig import REALM, UNAUTHENTICATED_PATHS, RateLimit, WebConfig

_BCRYPT_MAX_PASSWORD = 72  # bcrypt only ever reads this many bytes of a password


class BasicAuth:
    """Checks HTTP basic auth against bcrypt hashes, with verified credentials remembered.

    bcrypt is slow on purpose (tens of milliseconds per check); running it on every scrape would
    cost more than the scrape. A successful check is remembered as a keyed digest of the
    credentials (never the password itself) and later requests are compared against it in
    constant time. Unknown users are checked against a dummy hash so the answer takes as long
    as for a known user.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = dict(users)
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        cost = int(next(iter(users.values()))[4:6]) if users else 10
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))

    def check(self, authorization: str | None) -> bool:
        """True if the Authorization header value carries valid credentials."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        token = hmac.new(self._key, user + b"\0" + password, hashlib.sha256).digest()
        name = user.decode("utf-8", "replace")
        with self._lock:
            known = self._verified.get(name)
        if known is not None and hmac.compare_digest(known, token):
            return True
        hashed = self._users.get(name)
        valid = _bcrypt_matches(password, hashed if hashed is not None else self._dummy)
        if valid and hashed is not None:
            with self._lock:
                self._verified[name] = token  # one entry per configured user, at most
            return True
        return False


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
        return None
    try:
        # WSGI hands headers over as latin-1 strings; base64 text is ASCII.
        decoded = base64.b64decode(encoded.strip().encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:
        return False


class TokenBucket:
    """rate_limit: `burst` requests at once, one more per `interval` seconds (the toolkit's
    rate.Limiter). The bucket starts full; shared by every client, as in the toolkit."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = limit.interval
        self._burst = float(limit.burst)
        self._tokens = self._burst
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take one request's token if there is one."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._last, 0.0)
            self._last = now
            self._tokens = min(self._burst, self._tokens + elapsed / self._interval)
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class WebConfigMiddleware:
    """WSGI middleware: the rate limit, then basic auth, on every path but the probes'
    (/-/healthy, /-/ready), and the configured headers on every answer.

    The rate limit comes first so that a flood of guessed passwords costs no bcrypt checks.
    """

    def __init__(self, app: WsgiApp, config: WebConfig) -> None:
        self.app = app
        self.auth = BasicAuth(config.users) if config.users else None
        self.bucket = TokenBucket(config.rate_limit) if config.rate_limit else None
        self.headers = list(config.headers)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def respond(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            return start_response(status, [*headers, *self.headers], *args)

        probe = environ.get("PATH_INFO") in UNAUTHENTICATED_PATHS
        if self.bucket is not None and not probe and not self.bucket.allow():
            return text_response(respond, "429 Too Many Requests", "Too Many Requests\n")
        if (
            self.auth is not None
            and not probe
            and not self.auth.check(environ.get("HTTP_AUTHORIZATION"))
        ):
            challenge = ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
            return text_response(respond, "401 Unauthorized", "Unauthorized\n", [challenge])
        return self.app(environ, respond)


def wrap_app(app: WsgiApp, config: WebConfig) -> WsgiApp:
    """The app behind the rate limit, basic auth and extra headers, if the config asks for any."""
    return WebConfigMiddleware(app, config) if config.needs_middleware else app
