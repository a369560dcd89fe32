"""What every WSGI piece of the exporter shares: the callable types and the short whole answer.

Every module speaking WSGI takes `StartResponse` and `WsgiApp` from here, and answers a body it
holds whole with `whole_response` (plain text: `text_response`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def whole_response(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
    *,
    head: bool = False,
) -> Iterable[bytes]:
    """An answer whose body is at hand: its type and length, then the body (none for HEAD)."""
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])],
    )
    return [] if head else [body]


def text_response(
    start_response: StartResponse,
    status: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    """A short plain-text answer: an error's one-line reason, or OK."""
    return whole_response(start_response, status, text.encode(), "text/plain; charset=utf-8", extra)
