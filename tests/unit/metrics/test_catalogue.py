"""Every rendered line agrees with the metric catalogue: family, help, type, label names and order.

A disagreement fails naming the family and the label, so a label added to the catalogue but not
to the renderer (or the reverse) says exactly what is missing.

Also here: A bad metric family declaration is refused with an exact message (tests/unit/metrics/test_catalogue.py
checks the other cases by their words)."""

from __future__ import annotations

import json
import re

import pytest

from exporter.metrics import catalogue as c
from exporter.metrics.encoding import plain_body
from exporter.polling import exposition
from exporter.polling.exposition import SubaccountScrape, render_inventory, render_scrapes
from exporter.polling.model import parse_inventory
from exporter.simulator import list_body

NOW = 1719820000.0
ODD = 'Mo"bi\\le\nx, {y}="z"'  # escaped characters, and text that looks like labels

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"(,?)')


def label_names(line: str) -> tuple[str, list[str]]:
    """The metric name of a sample line and its label names, in the order they appear."""
    name, brace, rest = line.partition("{")
    if not brace:
        return name.split(" ")[0], []
    names, at = [], 0
    while not rest.startswith("}", at):
        match = _LABEL.match(rest, at)
        assert match, f"{name}: unreadable labels at {rest[at:]!r}"
        names.append(match[1])
        at = match.end()
    return name, names


def disagreement(line: str) -> str | None:
    """What a sample line gets wrong against the catalogue, naming family and label; or None."""
    name, names = label_names(line)
    family = c.BY_NAME.get(name)
    if family is None:
        return f"{name}: no such family in the catalogue"
    for label in family.labels:
        if label not in names:
            return f"{name}: label {label!r} is missing"
    for label in names:
        if label not in family.labels:
            return f"{name}: label {label!r} is not in the catalogue"
    for got, expected in zip(names, family.labels, strict=True):
        if got != expected:
            return (
                f"{name}: label {got!r} is out of order (rendered {', '.join(names)}; "
                f"catalogue {', '.join(family.labels)})"
            )
    return None


def rendered_text() -> str:
    """Two subaccounts with every family present, one with hostile label values."""
    doc = list_body(5, "acme-prod", 40, NOW, "http://127.0.0.1:9")
    first = doc["numbers"][0]
    doc["numbers"] += [
        {**first, "msisdn": "+6531230002", "numberType": ODD, "referenceId": ODD},
        {**first, "msisdn": '+65"3\\', "billingCurrency": ODD, "countryCode": ODD},
        {**first, "msisdn": "+6531230004", "operationalStatus": "Porting"},
        {**first, "msisdn": "+6531230005", "numberHealth": {"isHealthy": False, "status": ODD}},
    ]
    inventory = parse_inventory(json.dumps(doc).encode())
    scrapes = [
        SubaccountScrape(sub, True, 0.5, render_inventory(inventory, sub), NOW - 3)
        for sub in ("acme-prod", 'we"ird\\sub')
    ]
    scrapes.append(SubaccountScrape("acme-down", False, 0.1))
    return b"".join(plain_body(render_scrapes(scrapes, NOW))).decode()


def test_every_rendered_line_agrees_with_the_catalogue():
    text = rendered_text()
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples
    problems = [problem for line in samples if (problem := disagreement(line))]
    assert not problems, "\n".join(sorted(set(problems)))


def test_every_family_is_rendered_with_its_help_and_type_in_catalogue_order():
    text = rendered_text()
    helps = re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE)
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    assert helps == [(family.name, family.help) for family in c.POLL_FAMILIES]
    assert types == [(family.name, family.type) for family in c.POLL_FAMILIES]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            'eightbyeight_number_healthy{subaccount="a"} 1.0',
            "eightbyeight_number_healthy: label 'msisdn' is missing",
        ),
        (
            'eightbyeight_up{region="x",subaccount="a"} 1.0',
            "eightbyeight_up: label 'region' is not in the catalogue",
        ),
        (
            'eightbyeight_number_rental_price{msisdn="+1",currency="USD",subaccount="a"} 5.0',
            "eightbyeight_number_rental_price: label 'msisdn' is out of order",
        ),
        ('eightbyeight_nonsense{subaccount="a"} 1.0', "eightbyeight_nonsense: no such family"),
    ],
    ids=["missing", "extra", "out-of-order", "unknown-family"],
)
def test_a_disagreement_names_the_family_and_the_label(line, words):
    assert words in (disagreement(line) or "")


def test_label_names_are_read_past_escaped_values():
    line = r'eightbyeight_number_info{country="a\",b=\"c",msisdn="+1\\",subaccount="s"} 1.0'
    assert label_names(line) == ("eightbyeight_number_info", ["country", "msisdn", "subaccount"])


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (("subaccount", "country"), "labels must be listed sorted: country, subaccount"),
        (("country",), "has no 'subaccount' label"),
        (("le", "subaccount"), "a histogram's own labels cannot include 'le'"),
        (("country", "country", "subaccount"), "lists a label twice"),
        (("bad-name", "subaccount"), "'bad-name' is not a valid Prometheus label name"),
    ],
)
def test_a_bad_declaration_fails_at_import_naming_the_family(labels, words):
    kind, buckets = ("histogram", (1.0,)) if "le" in labels else ("gauge", ())
    with pytest.raises(ValueError, match="metric family eightbyeight_example: ") as caught:
        c.Family("eightbyeight_example", "An example.", labels, kind, buckets=buckets)
    assert words in str(caught.value)


def test_family_names_are_unique_and_prefixed():
    names = [family.name for family in c.FAMILIES]
    assert len(set(names)) == len(names)
    assert all(name.startswith("eightbyeight_") for name in names)


def test_a_label_declared_without_a_value_fails_naming_family_and_label(monkeypatch):
    family = c.VIRTUAL_NUMBERS_HEALTHY
    with_region = c.Family(family.name, family.help, (*family.labels[:2], "region", c.SUBACCOUNT))
    monkeypatch.setitem(exposition.PREFIXES, family.name, exposition._prefix(with_region))
    inventory = parse_inventory(json.dumps(list_body(5, "acme-prod", 3, NOW, "http://x")).encode())
    with pytest.raises(
        KeyError, match="eightbyeight_virtual_numbers_healthy: no value for label 'region'"
    ):
        render_inventory(inventory, "acme-prod")


def test_a_per_number_label_needs_a_number_column_of_its_name():
    family = c.Family(
        "eightbyeight_number_example", "An example.", ("msisdn", "region", "subaccount")
    )
    with pytest.raises(
        ValueError, match="eightbyeight_number_example: label 'region' has no NumberColumns field"
    ):
        exposition._number_line(family)


# --- every family, whoever emits it ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "counter", "name": "eightbyeight_x_total"}, "named without _total"),
        ({"kind": "info"}, "an info family's name ends in _info"),
        ({"kind": "gauge", "buckets": (1.0,)}, "only a histogram has buckets"),
        ({"kind": "histogram", "buckets": (2.0, 1.0)}, "needs its buckets, increasing"),
        ({"name": "eightbyeight_x_seconds"}, "unit must be 'seconds', as the name ends"),
        ({"unit": "seconds"}, "name must end in unit"),
        ({"values": (("reason", ("a",)),)}, "values for 'reason', which is not one of its labels"),
        ({"kind": "gauge", "created": True}, "only counters and histograms have _created"),
        ({"name": "other_x"}, "name must be eightbyeight_ followed by lower-case words"),
    ],
)
def test_kind_unit_and_values_are_checked_at_declaration(kwargs, words):
    fields = {"name": "eightbyeight_x", "help": "An example.", "labels": ("subaccount",)}
    with pytest.raises(ValueError, match="metric family ") as caught:
        c.Family(**{**fields, **kwargs})
    assert words in str(caught.value)


def test_every_family_has_help_and_an_emitter():
    assert len(c.FAMILIES) >= 50
    for family in c.FAMILIES:
        assert family.help.endswith("."), family.name
        assert family.emitter in c.EMITTERS, family.name
    assert set(c.of(c.POLL)) == set(c.POLL_FAMILIES)


def test_one_concept_has_one_label_name():
    """No family names a concept by a synonym of the label another family uses for it."""
    synonyms = {name: canon for canon, names in c.LABEL_SYNONYMS.items() for name in names}
    used = {(label, family.name) for family in c.FAMILIES for label in family.labels}
    wrong = sorted(
        f"{family}: label {label!r} should be {synonyms[label]!r}"
        for label, family in used
        if label in synonyms
    )
    assert not wrong, "\n".join(wrong)


def test_the_event_type_label_has_the_same_values_on_every_family():
    with_event_type = [family for family in c.FAMILIES if "event_type" in family.labels]
    assert len(with_event_type) >= 5  # receiver's and webhook registration's families
    assert {family.values_of("event_type") for family in with_event_type} == {c.EVENT_TYPES}


def balance_collector() -> object:
    """--balance.account-id's collector, having read one balance (in this thread)."""
    from exporter.polling.balance import BalanceCollector

    class Client:
        def fetch_balance(self, account_id: str, timeout: float | None = None) -> bytes:
            return json.dumps({"balance": 12.5, "currency": "EUR"}).encode()

    collector = BalanceCollector(Client(), "0" * 32, 300.0, 1.0, wall=lambda: NOW)
    thread = collector.start_read()
    assert thread is not None
    thread.join()
    return collector


def whole_exposition() -> str:
    """/metrics as the exporter serves it with every emitter on, each having seen some data."""
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.polling.configured import WebhookConfigCollector
    from exporter.pushing.events import (
        decode_envelope,
        decode_number_update,
        decode_session_summary,
    )
    from exporter.pushing.state import WebhookState
    from exporter.web.listener import bridge
    from tests.support.callbacks import vnu, vnu_number, vss

    metrics = SelfMetrics(clock=lambda: NOW)
    metrics.start_at_zero("acme-prod")
    metrics.api.request("acme-prod")
    metrics.api.duration("acme-prod", 0.3)
    metrics.configuration_loaded(NOW)
    state = WebhookState(allowed={"acme-prod"}, clock=lambda: NOW)
    # Before NOW: an update time far in the future is refused.
    numbers = [vnu_number("+6531234567", "Active", "2024-06-01T00:00:00Z")]
    for event in (vnu(kind="SNAPSHOT", numbers=numbers), vss(error=-2004)):
        envelope = decode_envelope(json.dumps(event).encode())
        if envelope.eventType == "VIRTUAL_NUMBER_UPDATE":
            state.apply_number_update(decode_number_update(envelope))
        else:
            state.apply_session_summary(decode_session_summary(envelope))
    lists = WebhookConfigCollector()

    class Client:
        def fetch_webhooks(self, subaccount: str, timeout: float | None = None) -> bytes:
            hooks = [{"type": "VNU", "enabled": True}, {"type": "vss", "enabled": False}]
            return json.dumps({"webhooks": hooks}).encode()

    lists.read(Client(), "acme-prod", 1.0)
    metrics.registry.register(lists)
    metrics.registry.register(bridge(state))
    metrics.registry.register(balance_collector())
    # OpenMetrics: the answer with every sample, `_created` included (text 0.0.4 has none).
    return metrics.exposition(openmetrics=True).decode() + rendered_text()


def test_every_emitter_exposes_what_the_catalogue_declares():
    """Every family is there, with the catalogue's label names and only its declared values.

    This failed while the --collector.webhooks families had `type="VNU"` and the receiver's
    `event_type="vnu"`: one concept, two names and two spellings.
    """
    from prometheus_client.parser import text_string_to_metric_families

    declared = c.sample_labels()
    family_of = {name: family for family in c.FAMILIES for name in family.sample_names()}
    seen: set[str] = set()
    problems = []
    for parsed in text_string_to_metric_families(whole_exposition()):
        for sample in parsed.samples:
            if sample.name.startswith(("process_", "python_")):
                continue
            labels = declared.get(sample.name)
            if labels is None:
                problems.append(f"{sample.name}: not in the catalogue")
                continue
            if tuple(sorted(sample.labels)) != labels:
                problems.append(f"{sample.name}: labels {sorted(sample.labels)}, not {labels}")
            family = family_of[sample.name]
            seen.add(family.name)
            for label, value in sample.labels.items():
                allowed = family.values_of(label)
                if isinstance(allowed, tuple) and value not in allowed:
                    problems.append(f"{sample.name}: {label}={value!r} is not one of {allowed}")
    assert not problems, "\n".join(sorted(set(problems)))
    assert seen == set(c.BY_NAME), f"never exposed: {sorted(set(c.BY_NAME) - seen)}"


def test_created_samples_are_where_the_catalogue_says():
    text = whole_exposition()
    for family in c.FAMILIES:
        if family.kind in ("counter", "histogram"):
            has_created = f"\n{family.name}_created{{" in text
            assert has_created == family.created, family.name


# --- A bad metric family declaration is refused with an exact message (tests/unit/metrics/test_catalogue.py ----------


@pytest.mark.parametrize(
    ("labels", "kind", "message"),
    [
        (
            ("subaccount",),
            "untyped",
            "type 'untyped' is not one of gauge, counter, histogram, summary, info",
        ),
        (("subaccount",), "histogram", "a histogram needs its buckets, increasing"),
        (("__x", "subaccount"), "gauge", "label name '__x' is not a valid Prometheus label name"),
        (("country", "country", "subaccount"), "gauge", "lists a label twice"),
    ],
)
def test_bad_declaration_message_is_exact(labels, kind, message):
    with pytest.raises(ValueError, match=r"^metric family eightbyeight_example: ") as caught:
        c.Family("eightbyeight_example", "An example.", labels, kind)
    assert str(caught.value) == f"metric family eightbyeight_example: {message}"
