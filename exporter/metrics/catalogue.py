"""The metric catalogue: every family the exporter exposes per subaccount, declared once.

Each family has its name, help, type and label names. The renderer (`exporter.polling.exposition`)
derives its line templates from this table at import, and the tests check every rendered line
against it, so adding a label to a family is an edit here plus the value it comes from: a
per-number label's values are the `NumberColumns` field of the same name; an aggregate label's
value is set where `render_inventory` builds that family's labels.

Label names are listed sorted, as the text format (and prometheus_client) orders them. The order
of `FAMILIES` is the order of the exposition. Metric names are kept stable: dashboards, alert
rules and users' queries depend on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUBACCOUNT = "subaccount"  # the label every family carries: whose numbers these are
MSISDN = "msisdn"  # the label that makes a family per-number

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = ("gauge",)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what the operator sees in `# HELP`, `# TYPE` and the label set."""

    name: str
    help: str
    labels: tuple[str, ...]
    type: str = "gauge"

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(f"metric family {self.name}: {problem}")

    @property
    def per_number(self) -> bool:
        """True for the families with one series per virtual number."""
        return MSISDN in self.labels


def _problem(family: Family) -> str | None:
    """What is wrong with a family's declaration, or None."""
    if family.type not in _TYPES:
        return f"type {family.type!r} is not one of {', '.join(_TYPES)}"
    for label in family.labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            return f"label name {label!r} is not a valid Prometheus label name"
    if SUBACCOUNT not in family.labels:
        return f"has no {SUBACCOUNT!r} label"
    if len(set(family.labels)) != len(family.labels):
        return "lists a label twice"
    if list(family.labels) != sorted(family.labels):
        return f"labels must be listed sorted: {', '.join(sorted(family.labels))}"
    return None


_OWN = (SUBACCOUNT,)
_GROUP = ("country", "number_type", SUBACCOUNT)  # one series per (country, number type)

# --- per subaccount: the health of the scrape itself (rendered per scrape) --------------------
UP = Family(
    "eightbyeight_up",
    "1 if the last read of the subaccount's numbers from the 8x8 API succeeded and parsed, else 0.",
    _OWN,
)
SCRAPE_DURATION_SECONDS = Family(
    "eightbyeight_scrape_duration_seconds",
    "Seconds this scrape spent getting the subaccount's data (API call, or cache).",
    _OWN,
)
INVALID_RECORDS = Family(
    "eightbyeight_invalid_records",
    "Records in the last API response that were skipped because they could not be read.",
    _OWN,
)
LAST_SUCCESS_TIMESTAMP_SECONDS = Family(
    "eightbyeight_last_success_timestamp_seconds",
    "Unix time of the last successful read of the subaccount from the 8x8 API; with "
    "--cache.ttl or --cache.serve-stale-for the data shown may be this old.",
    _OWN,
)
# --- per subaccount and per group: aggregates of one API response -----------------------------
VIRTUAL_NUMBERS = Family(
    "eightbyeight_virtual_numbers",
    "Virtual numbers assigned to the subaccount, as reported by the API (totalNumbers).",
    _OWN,
)
VIRTUAL_NUMBERS_LISTED = Family(
    "eightbyeight_virtual_numbers_listed",
    "Virtual numbers read from the API's list (valid records); may differ from totalNumbers.",
    _OWN,
)
LAST_UPDATED_TIMESTAMP_SECONDS = Family(
    "eightbyeight_last_updated_timestamp_seconds",
    "Unix time of the last status update to any of the subaccount's numbers (lastUpdatedAt).",
    _OWN,
)
VIRTUAL_NUMBERS_BY_STATUS = Family(
    "eightbyeight_virtual_numbers_by_status",
    "Virtual numbers by operational status (active, expiring, inactive, unhealthy, or as reported).",
    ("country", "number_type", "operational_status", SUBACCOUNT),
)
VIRTUAL_NUMBERS_EXPIRING = Family(
    "eightbyeight_virtual_numbers_expiring",
    "Virtual numbers whose rental is expiring.",
    _GROUP,
)
VIRTUAL_NUMBERS_HEALTHY = Family(
    "eightbyeight_virtual_numbers_healthy",
    "Virtual numbers whose last health check found them reachable.",
    _GROUP,
)
VIRTUAL_NUMBERS_UNHEALTHY = Family(
    "eightbyeight_virtual_numbers_unhealthy",
    "Virtual numbers whose last health check found them unreachable.",
    _GROUP,
)
VIRTUAL_NUMBERS_HEALTH_UNKNOWN = Family(
    "eightbyeight_virtual_numbers_health_unknown",
    "Virtual numbers with no health verdict (health checks disabled, or no health data yet).",
    _GROUP,
)
VIRTUAL_NUMBERS_HEALTH_CHECK_DISABLED = Family(
    "eightbyeight_virtual_numbers_health_check_disabled",
    "Virtual numbers on which Number Health checks are turned off.",
    _GROUP,
)
HEALTH_CHECK_AGE_SECONDS = Family(  # the one aggregate that follows the clock: rendered per scrape
    "eightbyeight_health_check_age_seconds",
    "Seconds since the oldest last health check among the group's numbers with checks enabled.",
    _GROUP,
)
MONTHLY_RENTAL_COST = Family(
    "eightbyeight_monthly_rental_cost",
    "Sum of the monthly rental fees of the group's numbers, in the billing currency.",
    ("country", "currency", "number_type", SUBACCOUNT),
)
# --- per number (--no-collector.per-number turns these off) -----------------------------------
NUMBER_INFO = Family(
    "eightbyeight_number_info",
    "One series per virtual number carrying its attributes as labels; the value is always 1.",
    (
        "country",
        "currency",
        "health_status",
        MSISDN,
        "number_type",
        "operational_status",
        "reference_id",
        SUBACCOUNT,
    ),
)
NUMBER_HEALTHY = Family(
    "eightbyeight_number_healthy",
    "1 if the number's last health check found it reachable, 0 if not; absent when unknown.",
    (MSISDN, SUBACCOUNT),
)
NUMBER_HEALTH_CHECK_ENABLED = Family(
    "eightbyeight_number_health_check_enabled",
    "1 if Number Health checks are enabled for the number, else 0.",
    (MSISDN, SUBACCOUNT),
)
NUMBER_HEALTH_LAST_CHECKED_TIMESTAMP_SECONDS = Family(
    "eightbyeight_number_health_last_checked_timestamp_seconds",
    "Unix time of the number's last health check.",
    (MSISDN, SUBACCOUNT),
)
NUMBER_RENTAL_PRICE = Family(
    "eightbyeight_number_rental_price",
    "The number's recurring monthly rental fee, in the billing currency.",
    ("currency", MSISDN, SUBACCOUNT),
)
NUMBER_INCOMING_RATE_PER_MINUTE = Family(
    "eightbyeight_number_incoming_rate_per_minute",
    "The number's fee per minute of inbound call, in the billing currency.",
    ("currency", MSISDN, SUBACCOUNT),
)
NUMBER_BILLING_INCREMENT_SECONDS = Family(
    "eightbyeight_number_billing_increment_seconds",
    "The billing increment applied to inbound calls to the number, in seconds.",
    (MSISDN, SUBACCOUNT),
)

# Exposition order. Within a family, subaccounts appear in configuration order.
FAMILIES: tuple[Family, ...] = (
    UP,
    SCRAPE_DURATION_SECONDS,
    INVALID_RECORDS,
    LAST_SUCCESS_TIMESTAMP_SECONDS,
    VIRTUAL_NUMBERS,
    VIRTUAL_NUMBERS_LISTED,
    LAST_UPDATED_TIMESTAMP_SECONDS,
    VIRTUAL_NUMBERS_BY_STATUS,
    VIRTUAL_NUMBERS_EXPIRING,
    VIRTUAL_NUMBERS_HEALTHY,
    VIRTUAL_NUMBERS_UNHEALTHY,
    VIRTUAL_NUMBERS_HEALTH_UNKNOWN,
    VIRTUAL_NUMBERS_HEALTH_CHECK_DISABLED,
    HEALTH_CHECK_AGE_SECONDS,
    MONTHLY_RENTAL_COST,
    NUMBER_INFO,
    NUMBER_HEALTHY,
    NUMBER_HEALTH_CHECK_ENABLED,
    NUMBER_HEALTH_LAST_CHECKED_TIMESTAMP_SECONDS,
    NUMBER_RENTAL_PRICE,
    NUMBER_INCOMING_RATE_PER_MINUTE,
    NUMBER_BILLING_INCREMENT_SECONDS,
)

BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}
