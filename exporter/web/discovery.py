"""GET /discovery/probe-targets: the subaccounts as /probe targets, in the format of Prometheus'
`http_sd_configs`, so a Prometheus job needs no relabelling to scrape one target per subaccount.

Each subaccount is one target group:

```json
[{"targets": ["exporter.example:9881"],
  "labels": {"__metrics_path__": "/probe", "__param_target": "acme-prod",
             "instance": "acme-prod", "subaccount": "acme-prod"}}]
```

The address is the one Prometheus used to reach this endpoint (its Host header), so the scrapes
go where discovery went: a Kubernetes Service, a load balancer or one replica. Listed are the
configured subaccounts and the /probe allow-list, less any the allow-list would refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from exporter.common.wsgi import StartResponse, whole_response
from exporter.config.settings import Settings
from exporter.config.values import host_port, url_host

DISCOVERY_PATH = "/discovery/probe-targets"
PROBE_PATH = "/probe"
# host:port as a client may send it: a name or IPv4 address, or an IPv6 address in brackets.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)


def discovered_subaccounts(settings: Settings) -> list[str]:
    """Configured subaccounts first, then allow-listed ones; none that /probe would refuse."""
    allowed = settings.probe_allowed
    subaccounts = [config.subaccount for config in settings.subaccounts]
    if allowed is not None:
        subaccounts = [s for s in subaccounts if s in allowed]
        subaccounts += sorted(allowed.difference(subaccounts))
    return subaccounts


def target_groups(subaccounts: Iterable[str], address: str) -> list[dict[str, Any]]:
    """One http_sd target group per subaccount, all scraped at `address`."""
    return [
        {
            "targets": [address],
            "labels": {
                "__metrics_path__": PROBE_PATH,
                "__param_target": subaccount,
                "instance": subaccount,
                "subaccount": subaccount,
            },
        }
        for subaccount in subaccounts
    ]


def request_address(environ: dict[str, Any]) -> str:
    """host:port the client reached us at: the Host header, else the server's own address."""
    host = environ.get("HTTP_HOST", "")
    if _HOST.fullmatch(host):
        return host
    name, port = environ.get("SERVER_NAME", "127.0.0.1"), environ.get("SERVER_PORT", "")
    return host_port(name, port) if port else url_host(name)


def serve_discovery(
    settings: Settings, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    """The WSGI answer to GET/HEAD /discovery/probe-targets."""
    groups = target_groups(discovered_subaccounts(settings), request_address(environ))
    body = json.dumps(groups, separators=(",", ":")).encode()
    head = environ.get("REQUEST_METHOD") == "HEAD"
    return whole_response(start_response, "200 OK", body, "application/json", head=head)
