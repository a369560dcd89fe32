"""A bad metric family declaration is refused with an exact message (tests/test_catalogue.py
checks the other cases by their words)."""

from __future__ import annotations

import pytest

from exporter.metrics import catalogue as c


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
