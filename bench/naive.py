"""The naive peer: the same series the exporter exposes, written the way most small exporters are.

`json.loads` the body, one `Gauge(...).labels(...).set(...)` per sample on a fresh registry, then
`generate_latest`. Family names, help and label names come from the exporter's catalogue (so a
new label is declared once); every value is computed here, on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from exporter.metrics import catalogue as c

KNOWN = ("active", "expiring", "inactive", "unhealthy")


def _time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _label(value: object) -> str:
    return value if isinstance(value, str) and value else "unknown"


def naive_exposition(body: bytes, subaccount: str, now: float, per_number: bool = True) -> bytes:
    """Parse, aggregate and render one subaccount's body the straightforward way."""
    doc = json.loads(body)
    registry = CollectorRegistry(auto_describe=False)

    def gauge(family: c.Family) -> Gauge:
        return Gauge(family.name, family.help, family.labels, registry=registry)

    total = gauge(c.VIRTUAL_NUMBERS)
    listed = gauge(c.VIRTUAL_NUMBERS_LISTED)
    updated = gauge(c.LAST_UPDATED_TIMESTAMP_SECONDS)
    by_status = gauge(c.VIRTUAL_NUMBERS_BY_STATUS)
    expiring = gauge(c.VIRTUAL_NUMBERS_EXPIRING)
    healthy_g = gauge(c.VIRTUAL_NUMBERS_HEALTHY)
    unhealthy_g = gauge(c.VIRTUAL_NUMBERS_UNHEALTHY)
    unknown_g = gauge(c.VIRTUAL_NUMBERS_HEALTH_UNKNOWN)
    disabled_g = gauge(c.VIRTUAL_NUMBERS_HEALTH_CHECK_DISABLED)
    by_health = gauge(c.VIRTUAL_NUMBERS_BY_HEALTH_STATUS)
    age = gauge(c.HEALTH_CHECK_AGE_SECONDS)
    cost = gauge(c.MONTHLY_RENTAL_COST)
    if per_number:
        info = gauge(c.NUMBER_INFO)
        n_healthy = gauge(c.NUMBER_HEALTHY)
        n_enabled = gauge(c.NUMBER_HEALTH_CHECK_ENABLED)
        n_checked = gauge(c.NUMBER_HEALTH_LAST_CHECKED_TIMESTAMP_SECONDS)
        n_rental = gauge(c.NUMBER_RENTAL_PRICE)
        n_incoming = gauge(c.NUMBER_INCOMING_RATE_PER_MINUTE)
        n_billing = gauge(c.NUMBER_BILLING_INCREMENT_SECONDS)

    groups: dict[tuple[str, str], dict] = {}
    seen: set[str] = set()
    for record in doc.get("numbers") or []:
        msisdn = record.get("msisdn") if isinstance(record, dict) else None
        if not isinstance(msisdn, str) or not msisdn or msisdn in seen:
            continue
        seen.add(msisdn)
        country = _label(record.get("countryCode"))
        number_type = _label(record.get("numberType"))
        status = _label(record.get("operationalStatus")).lower()
        currency = _label(record.get("billingCurrency"))
        enabled = record.get("numberHealthCheckEnabled")
        health = record.get("numberHealth")
        if not isinstance(health, dict) or enabled is False:
            is_healthy, health_status, checked = None, "unknown", None
        else:
            is_healthy = health.get("isHealthy")
            health_status = _label(health.get("status")).lower()
            checked = _time(health.get("lastCheckedTime"))

        group = groups.setdefault(
            (country, number_type),
            {
                "statuses": dict.fromkeys(KNOWN, 0),
                "h": 0,
                "u": 0,
                "x": 0,
                "d": 0,
                "health": {},
                "oldest": None,
                "cost": {},
            },
        )
        group["statuses"][status] = group["statuses"].get(status, 0) + 1
        group["x" if is_healthy is None else "h" if is_healthy else "u"] += 1
        group["d"] += enabled is False
        group["health"][health_status] = group["health"].get(health_status, 0) + 1
        if checked is not None and (group["oldest"] is None or checked < group["oldest"]):
            group["oldest"] = checked
        price = record.get("rentalPrice")
        if price is not None:
            group["cost"][currency] = group["cost"].get(currency, 0.0) + price

        if per_number:
            info.labels(
                msisdn=msisdn,
                country=country,
                number_type=number_type,
                operational_status=status,
                health_status=health_status,
                reference_id=_label(record.get("referenceId")),
                currency=currency,
                subaccount=subaccount,
            ).set(1)
            if is_healthy is not None:
                n_healthy.labels(msisdn=msisdn, subaccount=subaccount).set(1 if is_healthy else 0)
            if enabled is not None:
                n_enabled.labels(msisdn=msisdn, subaccount=subaccount).set(1 if enabled else 0)
            if checked is not None:
                n_checked.labels(msisdn=msisdn, subaccount=subaccount).set(checked)
            if price is not None:
                n_rental.labels(msisdn=msisdn, currency=currency, subaccount=subaccount).set(price)
            rate = record.get("incomingRate")
            if rate is not None:
                n_incoming.labels(msisdn=msisdn, currency=currency, subaccount=subaccount).set(rate)
            unit = record.get("billingUnit")
            if unit is not None:
                n_billing.labels(msisdn=msisdn, subaccount=subaccount).set(unit)

    if doc.get("totalNumbers") is not None:
        total.labels(subaccount=subaccount).set(doc["totalNumbers"])
    listed.labels(subaccount=subaccount).set(len(seen))
    last = _time(doc.get("lastUpdatedAt"))
    if last is not None:
        updated.labels(subaccount=subaccount).set(last)
    for (country, number_type), group in groups.items():
        where = {"country": country, "number_type": number_type, "subaccount": subaccount}
        for status in sorted(group["statuses"]):
            by_status.labels(operational_status=status, **where).set(group["statuses"][status])
        expiring.labels(**where).set(group["statuses"]["expiring"])
        healthy_g.labels(**where).set(group["h"])
        unhealthy_g.labels(**where).set(group["u"])
        unknown_g.labels(**where).set(group["x"])
        disabled_g.labels(**where).set(group["d"])
        for health_status in sorted(group["health"]):
            by_health.labels(health_status=health_status, **where).set(
                group["health"][health_status]
            )
        if group["oldest"] is not None:
            age.labels(**where).set(max(0.0, now - group["oldest"]))
        for currency in sorted(group["cost"]):
            cost.labels(currency=currency, **where).set(group["cost"][currency])
    return generate_latest(registry)
