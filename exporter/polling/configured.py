"""--collector.webhooks: what 8x8 has registered for the subaccount's callbacks.

After each good read of a subaccount's numbers (inside the same single flight and deadline),
`GET /api/v1/subaccounts/{id}/webhooks` is read and, for VNU and VSS, exported: whether a
webhook of that type is registered, whether it is enabled, and whether an Authorization value
(httpAuthHeader) is set. A failed read keeps the last answer and sets
`eightbyeight_webhook_config_up` to 0; it never fails the scrape. The families are declared in
`exporter.metrics.catalogue`; their `event_type` label is the receiver's (`vnu`, `vss`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol, runtime_checkable

import msgspec
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.common.errors import FetchError
from exporter.common.logs import log_event
from exporter.metrics import catalogue as c
from exporter.metrics.instruments import gauge_family

log = logging.getLogger("exporter.webhooks")

# 8x8's webhook types, as the API spells them, by the event_type label value they are shown as.
TYPES = {event_type.upper(): event_type for event_type in c.EVENT_TYPES}
_Short = Annotated[str, msgspec.Meta(max_length=2048)]


class _Webhook(msgspec.Struct, rename="camel"):
    type: _Short
    enabled: bool = False
    http_auth_header_available: bool = False
    url: _Short | None = None


class _Webhooks(msgspec.Struct):
    webhooks: Annotated[list[_Webhook], msgspec.Meta(max_length=1000)] = []


_decoder = msgspec.json.Decoder(_Webhooks)


@runtime_checkable
class WebhooksClient(Protocol):
    """What reading the webhook list needs of the API client (exporter.polling.client.ApiClient)."""

    def fetch_webhooks(
        self, subaccount: str, timeout: float | None = None
    ) -> bytes | bytearray: ...


class WebhookConfigCollector:
    """Remembers the last webhook list per subaccount; a prometheus_client collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: dict[str, dict[str, tuple[bool, bool]]] = {}
        self._up: dict[str, bool] = {}

    def reader(self, client: WebhooksClient) -> Callable[[str, float], None]:
        """A scraper's `after_fetch` hook reading through the subaccount's own client."""

        def read(subaccount: str, timeout: float) -> None:
            self.read(client, subaccount, timeout)

        return read

    def read(self, client: WebhooksClient, subaccount: str, timeout: float) -> None:
        """Fetch and remember the subaccount's webhooks; failures are logged and kept out."""
        try:
            listed = _decoder.decode(client.fetch_webhooks(subaccount, timeout))
        except (FetchError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = exc.reason if isinstance(exc, FetchError) else "invalid_response"
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
            for hook in listed.webhooks
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
