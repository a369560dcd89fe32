"""The metric catalogue: every family the exporter exposes, declared once.

Each `Family` says what an operator sees and relies on: name, kind, label names, the values an
enumerated label takes, histogram buckets, help, unit, which part of the exporter emits it
(`Emitter`) and whether it has one series per virtual number. Everything else is built from it:

- the inventory renderer (`exporter.polling.exposition`) derives its line templates from the
  `POLL` families at import, and tests check every rendered line against them;
- the exporter's own series (`exporter.metrics.selfmetrics`), the webhook receiver's families
  (`exporter.pushing.state`) and the webhook-registration families
  (`exporter.polling.configured`) make their instruments from these entries
  (`exporter.metrics.instruments`);
- the reference page `docs/metrics.md` is generated from it (`python -m
  exporter.metrics.reference`), and the dashboard and rule tests check their queries against it.

Adding a family is one entry here plus the computation of its value: see
docs/development-metrics.md. Label names are listed sorted, as the text format (and
prometheus_client) orders them. The order of each emitter's families is their exposition order.
Metric names are kept stable: dashboards, alert rules and users' queries depend on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.common.countries import ASSIGNED, UNKNOWN
from exporter.common.eightbyeight import NUMBER_STATUSES
from exporter.common.errors import REASONS

SUBACCOUNT = "subaccount"  # whose numbers these are; on every family of a subaccount
MSISDN = "msisdn"  # the label that makes a family per-number
OTHER = "other"  # what a pushed value outside its known set is counted as

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"eightbyeight_[a-z0-9_]*[a-z0-9]")
KINDS = ("gauge", "counter", "histogram", "summary", "info")
# A name ending in one of these must declare it as its unit (base units, as Prometheus names them).
UNITS = ("seconds", "ratio", "bytes")


@dataclass(frozen=True, slots=True)
class Emitter:
    """The part of the exporter that produces a family, and when its families exist."""

    key: str
    title: str
    description: str


POLL = Emitter(
    "poll",
    "Inventory poll",
    "Read from the subaccount's numbers list (`GET /api/v1/subaccounts/{id}/numbers`) on each "
    "scrape, or from the cache. Served on `/metrics` for the configured subaccounts and on "
    "`/probe?target=...`. The inventory families come from the last good response and are "
    "absent while `eightbyeight_up` is 0; counts are zero-filled for the four documented "
    "statuses and the health states of every country and number type seen, so queries and "
    "alerts never meet missing series. The per-number families are on by default; "
    "`--no-collector.per-number` turns them off.",
)
EXPORTER = Emitter(
    "exporter",
    "The exporter's own",
    "The exporter's own series, on `/metrics` only (never on `/probe`): requests to the 8x8 API "
    "per subaccount, and the build. A configured subaccount keeps its series for the life of "
    "the process; one asked for only through `/probe` keeps them while it is among the most "
    "recently probed (the bound of the probe scrapers), so `/metrics` does not grow with every "
    "ID ever probed; one that comes back starts again at zero, which `rate()` and `increase()` "
    "treat as a counter reset. The client library adds the standard `process_*` and `python_*` "
    "families.",
)
CONFIG = Emitter(
    "config",
    "Configuration reload",
    "Set at start-up and by each reload (`SIGHUP` or `POST /-/reload`); on `/metrics`.",
)
RECEIVER = Emitter(
    "receiver",
    "Callbacks (with `--webhook.listen-address`)",
    "Callbacks 8x8 pushes to the receiver: virtual number updates (VNU) and session summaries "
    "(VSS), kept in memory and served on `/metrics` (see [webhooks.md](webhooks.md)). `country` "
    "is the virtual number's country; a leg's virtual number is the `destination` of an "
    "INBOUND leg and the `source` of an OUTBOUND one. The per-number families follow "
    "`--collector.per-number` and exist only for numbers 8x8 listed in a VNU for that "
    "subaccount, first come first served up to `PER_NUMBER_SERIES_CAP` per subaccount (more are counted in "
    "`eightbyeight_webhook_numbers_over_cap_total`), so callbacks naming other numbers cannot "
    "grow the exposition.",
)
WEBHOOK_LIST = Emitter(
    "webhook_list",
    "Webhook registrations (with `--collector.webhooks`)",
    "With `--collector.webhooks`: after each good read of a subaccount's numbers, "
    "`GET /api/v1/subaccounts/{id}/webhooks` tells whether the VNU and VSS webhooks are "
    "registered, enabled and send an Authorization value; on `/metrics`.",
)
BALANCE = Emitter(
    "balance",
    "Prepaid balance (with `--balance.account-id`)",
    "With `--balance.account-id`: the 8x8 account's prepaid balance, read from the balance API "
    "in the background at most once per `--balance.interval` (never on a scrape's budget); on "
    "`/metrics`. A failed read keeps the last balance and sets "
    "`eightbyeight_account_balance_up` to 0; it never fails a scrape nor changes "
    "`eightbyeight_up`. The balance belongs to the account, so these families have no "
    "`subaccount` label: their figures are per process.",
)
EMITTERS = (POLL, EXPORTER, CONFIG, RECEIVER, WEBHOOK_LIST, BALANCE)

# --- label vocabularies: the values enumerated labels take ------------------------------------
EVENT_TYPES = ("vnu", "vss")  # callback event types, lower-case on every family that has them
UPDATE_EVENT_TYPES = ("snapshot", "updates")
SESSION_STATUSES = ("completed", "no_answer", "busy", "canceled", "failed", "error")
CALL_STATUSES = SESSION_STATUSES
DIRECTIONS = ("inbound", "outbound")
# A leg is "answered" when it connected, "failed" when 8x8 or the network failed it, and
# "unanswered" when the other side did not pick up (busy, no answer, cancelled).
CALL_OUTCOMES = ("answered", "failed", "unanswered")
# Receiver outcomes: every answer is counted, refusals by their reason (a fixed list, so a
# caller without the Authorization value cannot add series).
REQUEST_OUTCOMES = (
    "accepted",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "duplicate",
    "unknown_event_type",
    "malformed_json",
    "bad_framing",
    "invalid_event",
    "body_too_large",
    "body_timeout",
    "subaccount_not_allowed",
    "overloaded",
)
# The error codes 8x8 documents (errorDetails.errorCode); any other is counted as "other".
ERROR_CODES = (*(str(code) for code in range(-2010, -2000)), "-9999")
# The fields a call summary (or a VNU record's time) can lose one at a time.
INVALID_FIELDS = (
    "session_status",
    "call_direction",
    "call_status",
    "mos",
    "packet_loss_rate",
    "jitter",
    "call_duration",
    "call_quality",
    "updated_timestamp",
)
# The caps on pushed numbers: "numbers" (not kept at all), "series" (no per-number series).
CAPS = ("numbers", "series")
# Pushed numbers with per-number series, per subaccount (first come first served).
PER_NUMBER_SERIES_CAP = 10_000
# A country label: an officially assigned ISO 3166-1 alpha-2 code, "other" or "unknown".
COUNTRIES = (*sorted(ASSIGNED), OTHER, UNKNOWN)

# --- histogram buckets ------------------------------------------------------------------------
API_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# MOS: 1 (bad) to 5 (excellent), with a bucket at each edge of 8x8's bands: bad below 3.1,
# poor 3.1-3.6, fair 3.6-4.0, good 4.0-4.3, excellent 4.3-5.0.
MOS_BUCKETS = (1.0, 2.0, 2.5, 3.1, 3.6, 4.0, 4.3, 5.0)
PACKET_LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
JITTER_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5)

# One concept, one label name: names another family might be tempted to use for a concept that
# already has its label (tests/unit/metrics/test_catalogue.py refuses any family that uses one).
LABEL_SYNONYMS: dict[str, tuple[str, ...]] = {
    SUBACCOUNT: ("sub_account", "subaccount_id", "sub_account_id", "account"),
    MSISDN: ("number", "virtual_number", "phone_number", "e164"),
    "country": ("country_code", "cc"),
    "number_type": ("numbertype", "kind"),
    "operational_status": ("status", "number_status", "state"),
    "event_type": ("type", "webhook_type", "event", "callback_type"),
    "currency": ("billing_currency",),
    "reference_id": ("range", "number_range"),
    "reason": ("error", "failure_reason"),
    "field": ("invalid_field", "field_name"),
    "cap": ("limit",),
}

# What each label means; one concept has one label name on every family that carries it.
LABELS: dict[str, str] = {
    SUBACCOUNT: "The 8x8 subaccount ID whose numbers or events these are.",
    MSISDN: "The virtual number in E.164 format, with its leading `+`.",
    "country": "Two-letter country code of the virtual number (`unknown` when absent; on the "
    "receiver's families an officially assigned ISO 3166-1 code, else `other`).",
    "number_type": "The number type as 8x8 reports it, such as `Mobile` (`unknown` when absent).",
    "operational_status": "The number's operational status, lower-case (`active`, `expiring`, "
    "`inactive`, `unhealthy`; the numbers list may report others as they are).",
    "health_status": "The number's last Number Health status, lower-case, as reported.",
    "reference_id": "The number range the number belongs to (referenceId).",
    "currency": "The billing currency of the fees (billingCurrency).",
    "reason": "Why a fetch from an 8x8 API failed.",
    "version": "The exporter's version.",
    "outcome": "What became of it: on the receiver's requests, what the receiver did with a "
    "callback; on a number's call legs, how the leg ended.",
    "event_type": "The callback event type, lower-case: `vnu` (virtual number update) or `vss` "
    "(session summary); the same values on the receiver's and the registration families.",
    "update_event_type": "The VNU's updateEventType, lower-case.",
    "session_status": "The session's sessionStatus, lower-case.",
    "call_status": "The leg's callStatus, lower-case.",
    "direction": "The leg's callDirection, lower-case.",
    "error_code": "8x8's errorCode of a session that ended with an error (8x8's documented "
    "codes; `other` for any other).",
    "field": "The field of a callback whose value was dropped (missing, of the wrong type or "
    "out of the documented range).",
    "cap": "Which cap refused a pushed number: `numbers` (not kept) or `series` (kept, without "
    "per-number series).",
}

Values = tuple[str, ...] | int  # the values an enumerated label takes, or how many at most


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what the operator sees in `# HELP`, `# TYPE`, the labels and values.

    `name` is the family's name as prometheus_client and OpenMetrics know it: a counter's
    samples add `_total`, a histogram's `_bucket`, `_sum` and `_count`. `values` lists, for an
    enumerated label, the values it takes (or how many there may be at most); a label not in it
    takes values as the data has them. `created` says whether the family has `_created`
    samples in OpenMetrics answers (text 0.0.4 answers carry none).
    """

    name: str
    help: str
    labels: tuple[str, ...]
    kind: str = "gauge"
    emitter: Emitter = POLL
    unit: str = ""
    buckets: tuple[float, ...] = ()
    values: tuple[tuple[str, Values], ...] = ()
    created: bool = False
    # For a label whose values are one-hot per series set: how many it shows at once, where
    # fewer than it may take (a number's status shows the four documented ones, or `other`).
    at_once: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(f"metric family {self.name}: {problem}")

    @property
    def type(self) -> str:
        """The `# TYPE` of the text format 0.0.4, which has no info type."""
        return "gauge" if self.kind == "info" else self.kind

    @property
    def per_number(self) -> bool:
        """True for the families with one series per virtual number."""
        return MSISDN in self.labels

    def values_of(self, label: str) -> Values | None:
        """The values `label` takes (or how many), if the catalogue bounds them."""
        return dict(self.values).get(label)

    def sample_names(self) -> dict[str, tuple[str, ...]]:
        """The names of the family's samples, each with its label names (`le` for buckets)."""
        own = self.labels
        if self.kind == "counter":
            names = {f"{self.name}_total": own}
        elif self.kind == "histogram":
            names = {
                f"{self.name}_bucket": tuple(sorted((*own, "le"))),
                f"{self.name}_sum": own,
                f"{self.name}_count": own,
            }
        elif self.kind == "summary":
            names = {f"{self.name}_sum": own, f"{self.name}_count": own}
        else:
            names = {self.name: own}
        if self.created:
            names[f"{self.name}_created"] = own
        return names

    def samples_per_series(self) -> int:
        """How many samples one label set of the family has (buckets, sum, count, created)."""
        base = {"histogram": len(self.buckets) + 3, "summary": 2}.get(self.kind, 1)
        return base + (1 if self.created else 0)


def worst_case_series(family: Family) -> tuple[int, tuple[str, ...]]:
    """At most how many series the family has per subaccount (per process for a family without
    a subaccount label), and per what: the number, or the labels whose values come from the
    data. Every sample name counts as a series (a histogram's buckets, sum, count, created)."""
    count = family.samples_per_series()
    per: list[str] = []
    for label in family.labels:
        if label == SUBACCOUNT:
            continue
        values = dict(family.at_once).get(label, family.values_of(label))
        if values is not None:
            count *= values if isinstance(values, int) else len(values)
        elif not family.per_number:
            per.append(label)  # a per-number family's attributes come one per number
    return count, ((MSISDN,) if family.per_number else tuple(per))


def worst_case_per_subaccount(emitter: Emitter) -> tuple[int, int]:
    """At most how many series one subaccount has from the emitter's families whose values are
    all bounded: (those without per-number families, those per number)."""
    fixed = per_number = 0
    for family in FAMILIES:
        if family.emitter is not emitter or SUBACCOUNT not in family.labels:
            continue
        count, per = worst_case_series(family)
        if per == (MSISDN,):
            per_number += count
        elif not per:
            fixed += count
    return fixed, per_number


def _problem(family: Family) -> str | None:
    """What is wrong with a family's declaration, or None."""
    if not _METRIC_NAME.fullmatch(family.name):
        return "name must be eightbyeight_ followed by lower-case words"
    if family.kind not in KINDS:
        return f"type {family.kind!r} is not one of {', '.join(KINDS)}"
    for label in family.labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            return f"label name {label!r} is not a valid Prometheus label name"
    if family.emitter is POLL and SUBACCOUNT not in family.labels:
        return f"has no {SUBACCOUNT!r} label"
    if len(set(family.labels)) != len(family.labels):
        return "lists a label twice"
    if list(family.labels) != sorted(family.labels):
        return f"labels must be listed sorted: {', '.join(sorted(family.labels))}"
    return _kind_problem(family) or _unit_problem(family) or _values_problem(family)


def _kind_problem(family: Family) -> str | None:
    if family.kind == "histogram":
        if not family.buckets or list(family.buckets) != sorted(set(family.buckets)):
            return "a histogram needs its buckets, increasing"
        if "le" in family.labels:
            return "a histogram's own labels cannot include 'le'"
    elif family.buckets:
        return "only a histogram has buckets"
    if family.kind == "counter" and family.name.endswith("_total"):
        return "a counter is named without _total (its samples add it)"
    if family.kind == "info" and not family.name.endswith("_info"):
        return "an info family's name ends in _info"
    if family.created and family.kind not in ("counter", "histogram"):
        return "only counters and histograms have _created samples"
    return None


def _unit_problem(family: Family) -> str | None:
    if family.unit and family.unit not in UNITS:
        return f"unit {family.unit!r} is not one of {', '.join(UNITS)}"
    suffix = next((unit for unit in UNITS if family.name.endswith(f"_{unit}")), "")
    if family.unit != suffix:
        return f"unit must be {suffix!r}, as the name ends" if suffix else "name must end in unit"
    return None


def _values_problem(family: Family) -> str | None:
    for label, values in family.values:
        if label not in family.labels:
            return f"values for {label!r}, which is not one of its labels"
        if isinstance(values, int) and values < 1:
            return f"label {label!r} takes at least one value"
    return None


def _vals(**labels: Values) -> tuple[tuple[str, Values], ...]:
    return tuple(labels.items())


_OWN = (SUBACCOUNT,)
_GROUP = ("country", "number_type", SUBACCOUNT)  # one series per (country, number type)

# === Inventory poll: per subaccount, the health of the scrape itself (rendered per scrape) ====
UP = Family(
    "eightbyeight_up",
    "1 if the last read of the subaccount's numbers from the 8x8 API succeeded and parsed, else 0.",
    _OWN,
)
SCRAPE_DURATION_SECONDS = Family(
    "eightbyeight_scrape_duration_seconds",
    "Seconds this scrape spent getting the subaccount's data (API call, or cache).",
    _OWN,
    unit="seconds",
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
    unit="seconds",
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
    unit="seconds",
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
VIRTUAL_NUMBERS_BY_HEALTH_STATUS = Family(
    "eightbyeight_virtual_numbers_by_health_status",
    "Virtual numbers by the status of their last health check, as reported (unknown when "
    "checks are disabled or there is no health data).",
    ("country", "health_status", "number_type", SUBACCOUNT),
)
HEALTH_CHECK_AGE_SECONDS = Family(  # the one aggregate that follows the clock: rendered per scrape
    "eightbyeight_health_check_age_seconds",
    "Seconds since the oldest last health check among the group's numbers with checks enabled.",
    _GROUP,
    unit="seconds",
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
    kind="info",
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
    unit="seconds",
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
    unit="seconds",
)

# Exposition order of the inventory. Within a family, subaccounts appear in configuration order.
POLL_FAMILIES: tuple[Family, ...] = (
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
    VIRTUAL_NUMBERS_BY_HEALTH_STATUS,
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

# === The exporter's own: requests to the 8x8 API, and the build ==============================
API_REQUESTS = Family(
    "eightbyeight_api_requests",
    "Requests made to the 8x8 Virtual Numbers API (one per fetch; retries included in that one).",
    _OWN,
    kind="counter",
    emitter=EXPORTER,
    created=True,
)
API_REQUEST_FAILURES = Family(
    "eightbyeight_api_request_failures",
    "Fetches from the 8x8 API that failed, by reason (unauthorized, forbidden, not_found, "
    "bad_request, rate_limited, server_error, client_error, timeout, connection_error, "
    "invalid_response).",
    ("reason", SUBACCOUNT),
    kind="counter",
    emitter=EXPORTER,
    values=_vals(reason=REASONS),
    created=True,
)
API_REQUEST_DURATION_SECONDS = Family(
    "eightbyeight_api_request_duration_seconds",
    "Seconds taken to fetch a subaccount's numbers from the 8x8 API, body included.",
    _OWN,
    kind="histogram",
    emitter=EXPORTER,
    unit="seconds",
    buckets=API_DURATION_BUCKETS,
    created=True,
)
EXPORTER_BUILD_INFO = Family(
    "eightbyeight_exporter_build_info",
    "Version of the exporter; the value is always 1.",
    ("version",),
    kind="info",
    emitter=EXPORTER,
    values=_vals(version=1),
)
# === Configuration reload =====================================================================
CONFIG_LAST_RELOAD_SUCCESSFUL = Family(
    "eightbyeight_config_last_reload_successful",
    "1 if the last load of the configuration (start-up or reload) succeeded, else 0.",
    (),
    emitter=CONFIG,
)
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS = Family(
    "eightbyeight_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful load of the configuration (start-up or reload).",
    (),
    emitter=CONFIG,
    unit="seconds",
)

# === Webhook receiver: events 8x8 pushes ======================================================
# The virtual number's country as 8x8 pushes it ("unknown" when not a two-letter code).
_AT_COUNTRY = ("country", SUBACCOUNT)
WEBHOOK_REQUESTS = Family(
    "eightbyeight_webhook_requests",
    "Requests to the webhook receiver by outcome: accepted, duplicate, unknown_event_type, "
    "or why they were refused (unauthorized, not_found, method_not_allowed, bad_framing, "
    "subaccount_not_allowed, body_too_large, ...).",
    ("outcome",),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(outcome=REQUEST_OUTCOMES),
    created=True,
)
WEBHOOK_EVENTS = Family(
    "eightbyeight_webhook_events",
    "Callbacks accepted per subaccount and event type (vnu, vss).",
    ("event_type", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(event_type=EVENT_TYPES),
    created=True,
)
VNU_EVENTS = Family(
    "eightbyeight_vnu_events",
    "Virtual number update (VNU) events accepted, by updateEventType.",
    (SUBACCOUNT, "update_event_type"),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(update_event_type=(*UPDATE_EVENT_TYPES, OTHER)),
    created=True,
)
CALL_SESSIONS = Family(
    "eightbyeight_call_sessions",
    "Finished call sessions (VSS), by sessionStatus and the virtual number's country.",
    ("country", "session_status", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(country=COUNTRIES, session_status=(*SESSION_STATUSES, UNKNOWN, OTHER)),
    created=True,
)
CALL_LEGS = Family(
    "eightbyeight_call_legs",
    "Call legs of finished sessions, by direction and callStatus.",
    ("call_status", "direction", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(call_status=(*CALL_STATUSES, UNKNOWN, OTHER), direction=(*DIRECTIONS, UNKNOWN)),
    created=True,
)
CALL_SESSION_ERRORS = Family(
    "eightbyeight_call_session_errors",
    "Call sessions that ended with an error, by 8x8 errorCode (e.g. -2004 no coverage).",
    ("error_code", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(error_code=(*ERROR_CODES, OTHER)),
    created=True,
)
CALL_MOS = Family(
    "eightbyeight_call_mos",
    "Mean Opinion Score of call legs (1 bad to 5 excellent), as measured by 8x8.",
    _AT_COUNTRY,
    kind="histogram",
    emitter=RECEIVER,
    values=_vals(country=COUNTRIES),
    buckets=MOS_BUCKETS,
    created=True,
)
CALL_PACKET_LOSS_RATIO = Family(
    "eightbyeight_call_packet_loss_ratio",
    "Packet loss of call legs as a ratio (packetLossRate as 8x8 reports it).",
    _AT_COUNTRY,
    kind="histogram",
    emitter=RECEIVER,
    values=_vals(country=COUNTRIES),
    unit="ratio",
    buckets=PACKET_LOSS_BUCKETS,
    created=True,
)
CALL_JITTER_SECONDS = Family(
    "eightbyeight_call_jitter_seconds",
    "Jitter of call legs in seconds (8x8 reports milliseconds).",
    _AT_COUNTRY,
    kind="histogram",
    emitter=RECEIVER,
    values=_vals(country=COUNTRIES),
    unit="seconds",
    buckets=JITTER_BUCKETS,
    created=True,
)
WEBHOOK_LAST_EVENT_TIMESTAMP_SECONDS = Family(
    "eightbyeight_webhook_last_event_timestamp_seconds",
    "Unix time the receiver last accepted an event of this type for the subaccount.",
    ("event_type", SUBACCOUNT),
    emitter=RECEIVER,
    unit="seconds",
    values=_vals(event_type=EVENT_TYPES),
)
PUSHED_VIRTUAL_NUMBERS = Family(
    "eightbyeight_pushed_virtual_numbers",
    "Virtual numbers of the subaccount according to the last VNU (totalNumbers).",
    _OWN,
    emitter=RECEIVER,
)
PUSHED_VIRTUAL_NUMBERS_BY_STATUS = Family(
    "eightbyeight_pushed_virtual_numbers_by_status",
    "Virtual numbers by the operational status 8x8 last pushed for each (VNU).",
    ("operational_status", SUBACCOUNT),
    emitter=RECEIVER,
    values=_vals(operational_status=(*NUMBER_STATUSES, OTHER)),
)
# --- per number (--webhook.per-number) --------------------------------------------------------
NUMBER_PUSHED_STATUS = Family(
    "eightbyeight_number_pushed_status",
    "1 for the operational status 8x8 last pushed for the number (VNU), 0 for the others.",
    (MSISDN, "operational_status", SUBACCOUNT),
    emitter=RECEIVER,
    values=_vals(operational_status=(*NUMBER_STATUSES, OTHER)),
    at_once=(("operational_status", len(NUMBER_STATUSES)),),
)
NUMBER_PUSHED_STATUS_TIMESTAMP_SECONDS = Family(
    "eightbyeight_number_pushed_status_timestamp_seconds",
    "8x8's updatedTimestamp of the number's last pushed status.",
    (MSISDN, SUBACCOUNT),
    emitter=RECEIVER,
    unit="seconds",
)
NUMBER_CALL_LEGS = Family(
    "eightbyeight_number_call_legs",
    "Call sessions on the virtual number by outcome (answered, failed, unanswered), "
    "once per session, from the leg that carries the outcome.",
    (MSISDN, "outcome", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(outcome=CALL_OUTCOMES),
)
NUMBER_CALL_MOS = Family(
    "eightbyeight_number_call_mos",
    "Mean Opinion Score of the number's call legs (sum and count; divide for mean).",
    (MSISDN, SUBACCOUNT),
    kind="summary",
    emitter=RECEIVER,
)
NUMBER_CALL_PACKET_LOSS_RATIO = Family(
    "eightbyeight_number_call_packet_loss_ratio",
    "Packet loss ratio of the number's call legs (sum and count).",
    (MSISDN, SUBACCOUNT),
    kind="summary",
    emitter=RECEIVER,
    unit="ratio",
)
NUMBER_CALL_JITTER_SECONDS = Family(
    "eightbyeight_number_call_jitter_seconds",
    "Jitter of the number's call legs in seconds (sum and count).",
    (MSISDN, SUBACCOUNT),
    kind="summary",
    emitter=RECEIVER,
    unit="seconds",
)

WEBHOOK_INVALID_FIELDS = Family(
    "eightbyeight_webhook_invalid_fields",
    "Values dropped from accepted callbacks because they were missing, of the wrong type or "
    "out of the documented range; the rest of the event still counts.",
    ("field",),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(field=INVALID_FIELDS),
    created=True,
)
WEBHOOK_NUMBERS_OVER_CAP = Family(
    "eightbyeight_webhook_numbers_over_cap",
    "Pushed numbers refused by a cap, counted once when first pushed: 'numbers' (over "
    "100,000 per subaccount: not kept at all) or 'series' (kept and counted by status, but "
    "over 10,000 per subaccount: no per-number series).",
    ("cap", SUBACCOUNT),
    kind="counter",
    emitter=RECEIVER,
    values=_vals(cap=CAPS),
    created=True,
)

# === Webhook registration read (--collector.webhooks) =========================================
WEBHOOK_CONFIG_UP = Family(
    "eightbyeight_webhook_config_up",
    "1 if the last read of the subaccount's webhook list from the 8x8 API "
    "succeeded (--collector.webhooks), else 0.",
    _OWN,
    emitter=WEBHOOK_LIST,
)
WEBHOOK_CONFIGURED = Family(
    "eightbyeight_webhook_configured",
    "1 if a webhook of this event type (vnu, vss) is registered at 8x8 for the subaccount.",
    ("event_type", SUBACCOUNT),
    emitter=WEBHOOK_LIST,
    values=_vals(event_type=EVENT_TYPES),
)
WEBHOOK_ENABLED = Family(
    "eightbyeight_webhook_enabled",
    "1 if the subaccount's webhook of this event type is registered and enabled at 8x8.",
    ("event_type", SUBACCOUNT),
    emitter=WEBHOOK_LIST,
    values=_vals(event_type=EVENT_TYPES),
)
WEBHOOK_AUTH_HEADER_SET = Family(
    "eightbyeight_webhook_auth_header_set",
    "1 if the subaccount's webhook of this event type sends an Authorization value.",
    ("event_type", SUBACCOUNT),
    emitter=WEBHOOK_LIST,
    values=_vals(event_type=EVENT_TYPES),
)

# === Prepaid balance (--balance.account-id) ===================================================
ACCOUNT_BALANCE = Family(
    "eightbyeight_account_balance",
    "Prepaid balance of the 8x8 account as last read, in its currency (--balance.account-id).",
    ("currency",),
    emitter=BALANCE,
    values=_vals(currency=1),
)
ACCOUNT_BALANCE_UP = Family(
    "eightbyeight_account_balance_up",
    "1 if the last read of the prepaid balance succeeded, else 0.",
    (),
    emitter=BALANCE,
)
ACCOUNT_BALANCE_LAST_SUCCESS_TIMESTAMP_SECONDS = Family(
    "eightbyeight_account_balance_last_success_timestamp_seconds",
    "Unix time of the last successful read of the prepaid balance.",
    (),
    emitter=BALANCE,
    unit="seconds",
)
ACCOUNT_BALANCE_READ_FAILURES = Family(
    "eightbyeight_account_balance_read_failures",
    "Failed reads of the prepaid balance, by reason (forbidden: not a prepaid account).",
    ("reason",),
    kind="counter",
    emitter=BALANCE,
    values=_vals(reason=REASONS),
)

# Every family, each emitter's in its exposition order.
FAMILIES: tuple[Family, ...] = (
    *POLL_FAMILIES,
    API_REQUESTS,
    API_REQUEST_FAILURES,
    API_REQUEST_DURATION_SECONDS,
    EXPORTER_BUILD_INFO,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
    WEBHOOK_REQUESTS,
    WEBHOOK_EVENTS,
    VNU_EVENTS,
    CALL_SESSIONS,
    CALL_LEGS,
    CALL_SESSION_ERRORS,
    CALL_MOS,
    CALL_PACKET_LOSS_RATIO,
    CALL_JITTER_SECONDS,
    WEBHOOK_LAST_EVENT_TIMESTAMP_SECONDS,
    PUSHED_VIRTUAL_NUMBERS,
    PUSHED_VIRTUAL_NUMBERS_BY_STATUS,
    NUMBER_PUSHED_STATUS,
    NUMBER_PUSHED_STATUS_TIMESTAMP_SECONDS,
    NUMBER_CALL_LEGS,
    NUMBER_CALL_MOS,
    NUMBER_CALL_PACKET_LOSS_RATIO,
    NUMBER_CALL_JITTER_SECONDS,
    WEBHOOK_INVALID_FIELDS,
    WEBHOOK_NUMBERS_OVER_CAP,
    WEBHOOK_CONFIG_UP,
    WEBHOOK_CONFIGURED,
    WEBHOOK_ENABLED,
    WEBHOOK_AUTH_HEADER_SET,
    ACCOUNT_BALANCE,
    ACCOUNT_BALANCE_UP,
    ACCOUNT_BALANCE_LAST_SUCCESS_TIMESTAMP_SECONDS,
    ACCOUNT_BALANCE_READ_FAILURES,
)

BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}
if len(BY_NAME) != len(FAMILIES):
    raise ValueError("metric catalogue: a family name is declared twice")


def of(emitter: Emitter) -> tuple[Family, ...]:
    """The families an emitter produces, in exposition order."""
    return tuple(family for family in FAMILIES if family.emitter is emitter)


def sample_labels() -> dict[str, tuple[str, ...]]:
    """Every sample name the exporter exposes with its label names (what queries may use)."""
    return {name: labels for family in FAMILIES for name, labels in family.sample_names().items()}
