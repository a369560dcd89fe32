"""A 200 body that is an error envelope, or has no list, is read exactly as what it says."""

from __future__ import annotations

import json
import time

import pytest

from exporter.common.errors import ResponseError
from exporter.polling.model import parse_inventory, parse_timestamp


def parse(doc: dict) -> object:
    return parse_inventory(json.dumps(doc).encode(), True)


@pytest.mark.parametrize(
    ("doc", "reason", "detail"),
    [
        ({"statusCode": 401, "message": "bad key"}, "unauthorized", "error envelope 401: bad key"),
        ({"code": 450}, "client_error", "error envelope 450: "),
        ({"statusCode": 400, "statusMessage": "x"}, "bad_request", "error envelope 400: x"),
        ({"statusCode": "599", "statusMessage": "m"}, "server_error", "error envelope 599: m"),
        ({"statusCode": 600, "statusMessage": "m"}, "invalid_response", "error envelope 600: m"),
        (
            {"statusCode": 1001, "statusMessage": "failed"},
            "bad_request",
            "error envelope 1001: failed",
        ),
        ({"code": 1500}, "invalid_response", "error envelope 1500: "),
        ({}, "invalid_response", "no 'numbers' list in the response"),
        ({"lastUpdatedAt": None}, "invalid_response", "no 'numbers' list in the response"),
    ],
)
def test_error_envelope(doc, reason, detail):
    with pytest.raises(ResponseError) as caught:
        parse(doc)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


@pytest.mark.parametrize(
    "doc",
    [
        {"totalNumbers": 0},
        {"statusCode": 200},
        {"statusCode": 0, "statusMessage": "OK"},
        {"statusCode": "OK"},  # a code that is not a number is no error
    ],
)
def test_an_account_without_numbers_may_omit_the_list(doc):
    inventory = parse(doc)
    assert inventory is not None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"statusMessage": "\xff", "numbers": []}', "a string is not valid UTF-8"),
        (b" \n\t ", "empty body"),
        (b"  \n<html><body>503</body></html>", "HTML instead of JSON"),
    ],
)
def test_unreadable_body(body, detail):
    with pytest.raises(ResponseError) as caught:
        parse_inventory(body, True)
    assert (caught.value.reason, caught.value.detail) == ("invalid_response", detail)
    assert "\n" not in caught.value.detail


def test_a_time_without_offset_is_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Singapore")
    time.tzset()
    try:
        assert parse_timestamp("2024-07-01T05:50:23") == 1719813023.0
    finally:
        monkeypatch.undo()
        time.tzset()
