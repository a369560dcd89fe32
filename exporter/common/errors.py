"""The errors a scrape can end with, and the failure reasons they are counted by.

`FetchError` is what a scrape ends with (the HTTP status, if one came back, is kept for the
log line); `ResponseError` is what the response model raises about a body it cannot use: it
knows nothing of HTTP.
"""

from __future__ import annotations

REASONS = (
    "unauthorized",
    "forbidden",
    "not_found",
    "bad_request",
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "connection_error",
    "invalid_response",
)


class FetchError(Exception):
    """Reading a subaccount's numbers failed; `reason` is one of REASONS.

    `retries` is how many retries the fetch made before it gave up; `detail` is about the last
    attempt.
    """

    def __init__(
        self, reason: str, detail: str, status: int | None = None, retries: int = 0
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retries = retries


class ResponseError(Exception):
    """A response body cannot be read as a list of numbers; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def reason_for_status(status: int) -> str:
    """Map an HTTP status (or an error envelope's code) to a failure reason."""
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "forbidden"
    if status in (404, 410):
        return "not_found"
    if status in (400, 422):
        return "bad_request"
    if status == 429:
        return "rate_limited"
    if 500 <= status <= 599:
        return "server_error"
    if 400 <= status <= 499:
        return "client_error"
    return "invalid_response"
