"""--collector.webhooks: what 8x8 has registered for the subaccount's callbacks.

After a good read of a subaccount's numbers, `GET /api/v1/subaccounts/{id}/webhooks` is read
in the background on its own budget (`READ_TIMEOUT`, at most once per `READ_INTERVAL`) and,
for VNU and VSS, exported: whether a webhook of that type is registered, whether it is
enabled (8x8's default when the field is missing), and whether an Authorization value
(httpAuthHeader) is set. A failed read keeps the last answer and sets
`eightbyeight_webhook_config_up` to 0; it never delays or fails the scrape. The families are
declared in `exporter.metrics.catalogue`; their `event_type` label is the receiver's
(`vnu`, `vss`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol, runtime_checkable

import msgspec
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.common.errors import FetchError, ResponseError
from exporter.common.logs import log_event
from exporter.metrics import catalogue as c
from exporter.metrics.instruments import gauge_family
from exporter.polling.model import error_reason

log = logging.getLogger("exporter.webhooks")

# 8x8's webhook types, as the API spells them, by the event_type label value they are shown as.
TYPES = {event_type.upper(): event_type for event_type in c.EVENT_TYPES}
# The webhook list's own budget: each read may take this long, and one starts at most this
# often per subaccount (the list changes when someone edits it, not by the minute).
READ_TIMEOUT = 10.0
READ_INTERVAL = 60.0
_Short = Annotated[str, msgspec.Meta(max_length=2048)]


class _Webhook(msgspec.Struct, rename="camel"):
    type: _Short
    enabled: bool = True  # 8x8's documented default: a webhook is enabled unless it says not
    http_auth_header_available: bool = False
    url: _Short | None = None


class _Webhooks(msgspec.Struct, rename="camel"):
    # No default: a 200 without the list is an answer this code cannot read, not "nothing
    # configured" (which is an empty list).
    webhooks: Annotated[list[_Webhook], msgspec.Meta(max_length=1000)] | None = None
    status_code: int | _Short | None = None
    code: int | _Short | None = None
    message: _Short | None = None
    status_message: _Short | None = None


_decoder = msgspec.json.Decoder(_Webhooks)


@runtime_checkable
class WebhooksClient(Protocol):
    """What reading the webhook list needs of the API client (exporter.polling.client.ApiClient)."""

    def fetch_webhooks(
        self, subaccount: str, timeout: float | None = None
    ) -> bytes | bytearray: ...


def _webhooks_of(listed: _Webhooks) -> list[_Webhook]:
    """The list of a 200 answer; ResponseError for an error envelope or no list at all."""
    for code in (listed.status_code, listed.code):
        reason = error_reason(code)
        if reason is not None:
            raise ResponseError(reason, f"error envelope {code}")
    if listed.webhooks is None:
        raise ResponseError("invalid_response", "no 'webhooks' list in the answer")
    return listed.webhooks


class WebhookConfigCollector:
    """Remembers the last webhook list per subaccount; a prometheus_client collector.

    The list is read on its own budget, beside the scrape rather than inside it: after a good
    read of the numbers, a background read starts (at most one per subaccount at a time, at
    most once per `interval`, each cut off after `timeout`), and its answer shows from the
    next scrape on. A slow or hanging webhook list never delays a scrape and never changes
    `eightbyeight_up`.
    """

    def __init__(
        self,
        timeout: float = READ_TIMEOUT,
        interval: float = READ_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._config: dict[str, dict[str, tuple[bool, bool]]] = {}
        self._up: dict[str, bool] = {}
        self._running: set[str] = set()
        self._started: dict[str, float] = {}

    def reader(self, client: WebhooksClient) -> Callable[[str, float], None]:
        """A scraper's `after_fetch` hook: starts a read through the subaccount's own client
        and returns at once (what is left of the scrape's deadline is not used)."""

        def read(subaccount: str, _left: float) -> None:
            self.start_read(client, subaccount)

        return read

    def start_read(self, client: WebhooksClient, subaccount: str) -> threading.Thread | None:
        """Start a background read unless one runs or the last began under `interval` ago."""
        now = self.clock()
        with self._lock:
            last = self._started.get(subaccount)
            if subaccount in self._running or (last is not None and now - last < self.interval):
                return None
            self._running.add(subaccount)
            self._started[subaccount] = now
        thread = threading.Thread(
            target=self._read_then_release,
            args=(client, subaccount),
            name=f"webhook-list-{subaccount}",
            daemon=True,
        )
        thread.start()
        return thread

    def _read_then_release(self, client: WebhooksClient, subaccount: str) -> None:
        try:
            self.read(client, subaccount, self.timeout)
        except Exception as exc:  # noqa: BLE001 - an optional read never ends the process
            log_event(log, logging.WARNING, "reading webhooks failed", err=type(exc).__name__)
            with self._lock:
                self._up[subaccount] = False
        finally:
            with self._lock:
                self._running.discard(subaccount)

    def read(self, client: WebhooksClient, subaccount: str, timeout: float) -> None:
        """Fetch and remember the subaccount's webhooks; failures are logged and kept out."""
        try:
            listed = _decoder.decode(client.fetch_webhooks(subaccount, timeout))
            hooks = _webhooks_of(listed)
        except (FetchError, ResponseError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = (
                exc.reason if isinstance(exc, FetchError | ResponseError) else "invalid_response"
            )
            log_event(
                log,
                logging.WARNING,
                "reading webhooks failed",
                subaccount=subaccount,
                reason=reason,
            )
            with self._lock:
                self._up[subaccount] = False
            return
        found = {
            TYPES[hook.type.upper()]: (hook.enabled, hook.http_auth_header_available)
            for hook in hooks
            if hook.type.upper() in TYPES
        }
        with self._lock:
            self._config[subaccount] = found
            self._up[subaccount] = True

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            config = {sub: dict(found) for sub, found in self._config.items()}
            up = dict(self._up)
        families: dict[str, GaugeMetricFamily] = {
            "up": gauge_family(c.WEBHOOK_CONFIG_UP),
            "configured": gauge_family(c.WEBHOOK_CONFIGURED),
            "enabled": gauge_family(c.WEBHOOK_ENABLED),
            "auth": gauge_family(c.WEBHOOK_AUTH_HEADER_SET),
        }
        for sub in sorted(up):
            families["up"].add_metric([sub], 1.0 if up[sub] else 0.0)
        for sub, found in sorted(config.items()):
            for kind in c.EVENT_TYPES:
                enabled, auth = found.get(kind, (False, False))
                families["configured"].add_metric([kind, sub], 1.0 if kind in found else 0.0)
                families["enabled"].add_metric([kind, sub], 1.0 if enabled else 0.0)
                families["auth"].add_metric([kind, sub], 1.0 if auth else 0.0)
        yield from families.values()

    def describe(self) -> list[Any]:
        return []
