"""One failed fetch is one log line naming the subaccount, with its retries folded in: urllib3's
own "Retrying (...)" warnings never reach the log."""

from __future__ import annotations

import logging

import pytest
import requests

from exporter.common.errors import FetchError
from exporter.config.values import Secret
from exporter.polling.client import ApiClient
from tests.support.exporters import InProcessExporter, exporter_process
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import free_port

KEY = "fetch-log-key-7e7e7e7e"
SUB = "acme-prod"


def failed_fetch(base_url: str, retries: int) -> FetchError:
    client = ApiClient(base_url, Secret(KEY), timeout=10, retries=retries, backoff_factor=0.01)
    with pytest.raises(FetchError) as caught:
        client.fetch_numbers(SUB)
    return caught.value


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_connection_errors_count_their_retries_without_urllib3_lines(caplog, retries):
    with caplog.at_level(logging.DEBUG):
        error = failed_fetch(f"http://127.0.0.1:{free_port()}", retries)
    assert (error.reason, error.detail, error.retries) == (
        "connection_error",
        "connection refused",
        retries,
    )
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_status_retries_are_counted_and_the_last_answer_reported():
    with FakeApi(Reply.json({"statusMessage": "busy"}, status=503)) as api:
        error = failed_fetch(api.base_url, 2)
        assert api.count == 3
    assert (error.reason, error.status, error.retries) == ("server_error", 503, 2)
    assert error.detail == "HTTP 503: busy"


def test_a_fetch_that_recovers_logs_nothing(caplog):
    replies = iter([Reply(status=503), Reply.json(numbers_body([number()]))])
    with FakeApi(lambda path, headers: next(replies)) as api:
        client = ApiClient(api.base_url, Secret(KEY), retries=2, backoff_factor=0.01)
        with caplog.at_level(logging.DEBUG):
            assert client.fetch_numbers(SUB)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_failed_scrape_is_one_line_with_subaccount_and_retries(caplog):
    refused = f"http://127.0.0.1:{free_port()}"
    with (
        InProcessExporter(["--api.base-url", refused, "--subaccount", SUB]) as exp,
        caplog.at_level(logging.DEBUG),
    ):
        assert exp.get().status_code == 200
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].name == "exporter.polling.scraper"
    assert lines[0].fields["subaccount"] == SUB
    assert lines[0].fields["retries"] == 2
    assert lines[0].fields["detail"] == "connection refused"


@pytest.mark.slow
def test_the_process_log_has_one_line_per_failed_fetch(tmp_path):
    log = tmp_path / "exporter.log"
    refused = f"http://127.0.0.1:{free_port()}"
    argv = ["--api.base-url", refused, "--subaccount", SUB]
    with exporter_process(argv, {"EIGHTBYEIGHT_API_KEY": KEY}, log) as (url, _):
        for _ in range(2):
            assert requests.get(url + "/metrics", timeout=30).status_code == 200
    lines = [line for line in log.read_text().splitlines() if "level=warn" in line]
    assert len(lines) == 2, lines
    for line in lines:
        assert f"subaccount={SUB}" in line
        assert "retries=2" in line
        assert 'detail="connection refused"' in line
    assert "Retrying" not in log.read_text()
    assert "Retry(" not in log.read_text()
