"""Accept-Encoding read as RFC 9110 says: q-values, case, `*`, and `Vary` on every exposition."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.support.exporters import InProcessExporter
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

SUB = "acme-prod"


@pytest.fixture(scope="module")
def exporter():
    with (
        FakeApi(Reply.json(numbers_body([number()]))) as api,
        InProcessExporter(["--api.base-url", api.base_url, "--subaccount", SUB]) as exp,
    ):
        yield exp, api


def raw_get(url: str, accept_encoding: str | None) -> requests.Response:
    """A GET whose Accept-Encoding is exactly `accept_encoding` (or absent), body not decoded."""
    session = requests.Session()
    session.headers.pop("Accept-Encoding")
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    response = session.get(url, headers=headers, timeout=30, stream=True)
    response.raw_body = response.raw.read(decode_content=False)
    return response


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("Gzip;Q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip; q=0, identity", False),
        ("*", True),
        ("*;q=0, identity", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("identity;q=0, *", True),
        ("gzip;q=0.5, identity", False),
        ("gzip;q=0.5, identity;q=0.4", True),
        ("gzip;q=0.5, identity;q=0.5", True),
        ("deflate, br", False),
        ("gzip;q=2", False),  # not a q-value: that element is ignored
        ("gzip;q=abc, *", True),
    ],
)
def test_coding_follows_the_header(exporter, header, gzipped):
    assert_coding(exporter[0].url + "/metrics", header, gzipped)


@pytest.mark.parametrize(
    ("header", "gzipped"), [(None, False), ("GZIP", True), ("gzip;q=0", False)]
)
def test_probe_follows_the_header_too(exporter, header, gzipped):
    assert_coding(exporter[0].url + f"/probe?target={SUB}", header, gzipped)


def assert_coding(url: str, header: str | None, gzipped: bool) -> None:
    response = raw_get(url, header)
    assert response.status_code == 200
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.headers.get("Content-Encoding") == ("gzip" if gzipped else None)
    text = gzip.decompress(response.raw_body) if gzipped else response.raw_body
    assert f'eightbyeight_up{{subaccount="{SUB}"}} 1'.encode() in text


@pytest.mark.parametrize("header", ["identity;q=0", "*;q=0", "gzip;q=0, identity;q=0"])
def test_nothing_acceptable_is_406_without_an_api_call(exporter, header):
    exp, api = exporter
    before = api.count
    response = raw_get(exp.url + "/metrics", header)
    assert response.status_code == 406
    assert response.headers["Vary"] == "Accept-Encoding"
    assert b"Accept-Encoding" in response.raw_body
    assert api.count == before


def test_head_carries_vary_too(exporter):
    exp, _ = exporter
    response = requests.head(exp.url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
