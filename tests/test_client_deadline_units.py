"""The client's deadline machinery, unit by unit: no network, no real-time waits.

The retry policy is driven with urllib3's own objects and a fake clock; the socket cutter with a
`socket.socketpair()`, whose ends show at once (non-blocking) whether they were shut down.
"""

import math
import socket
import threading
import time
import types

import pytest
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import HTTPResponse

from exporter.config.values import Secret
from exporter.polling import client as client_module
from exporter.polling.client import (
    RETRY_STATUSES,
    ApiClient,
    DeadlineRetry,
    RetriesMade,
    _CuttableHTTPConnection,
    _CuttableHTTPPool,
    _CuttableHTTPSConnection,
    _CuttableHTTPSPool,
    _DeadlineCutter,
)

NOW = 1000.0


@pytest.fixture
def clock(monkeypatch):
    """The client's clock stands still at NOW."""
    monkeypatch.setattr(client_module, "time", types.SimpleNamespace(monotonic=lambda: NOW))


@pytest.fixture
def pair():
    ends = socket.socketpair()
    for end in ends:
        end.setblocking(False)
    yield ends
    for end in ends:
        end.close()


def is_shut_down(sock: socket.socket) -> bool:
    """True when the socket's read side was shut down: recv sees end-of-file at once."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False


def answer(status: int, **headers: str) -> HTTPResponse:
    return HTTPResponse(body=b"", status=status, headers=headers, preload_content=False)


def policy(deadline: float, **kwargs) -> DeadlineRetry:
    kwargs.setdefault("backoff_factor", 0.0)
    return DeadlineRetry(
        total=3,
        status=3,
        status_forcelist=RETRY_STATUSES,
        raise_on_status=False,
        respect_retry_after_header=True,
        deadline=deadline,
        **kwargs,
    )


# --- DeadlineRetry ----------------------------------------------------------------------------


def test_retry_policy_has_no_deadline_and_no_retries_made_by_default():
    retry = DeadlineRetry(total=1)
    assert retry.deadline == math.inf
    assert retry.made.count == 0
    assert RetriesMade().count == 0


def test_each_retry_granted_is_counted_once_in_the_count_every_copy_shares(clock):
    first = policy(NOW + 100)
    second = first.increment(method="GET", url="/x", response=answer(503))
    third = second.increment(method="GET", url="/x", response=answer(503))
    assert first.made is second.made is third.made
    assert first.made.count == 2
    assert (second.deadline, third.deadline) == (NOW + 100, NOW + 100)


def test_a_retry_granted_returns_the_renewed_policy(clock):
    renewed = policy(NOW + 100).increment(method="GET", url="/x", response=answer(503))
    assert isinstance(renewed, DeadlineRetry)
    assert renewed.total == 2
    assert [entry.status for entry in renewed.history] == [503]


def test_a_retry_granted_records_the_request_it_follows(clock):
    renewed = policy(NOW + 100).increment(method="GET", url="/x", response=answer(503))
    assert [(entry.method, entry.url) for entry in renewed.history] == [("GET", "/x")]


def test_retries_used_up_name_the_pool_they_were_made_for(clock):
    pool = object()
    with pytest.raises(MaxRetryError) as raised:
        DeadlineRetry(total=0, deadline=NOW + 100).increment(
            method="GET", url="/x", error=ConnectionResetError(), _pool=pool
        )
    assert raised.value.pool is pool


def test_a_retry_after_that_ends_past_the_deadline_ends_the_retries_at_once(clock):
    retry = policy(NOW + 3)
    pool = object()
    with pytest.raises(MaxRetryError) as raised:
        retry.increment(
            method="GET", url="/x", response=answer(429, **{"Retry-After": "5"}), _pool=pool
        )
    assert raised.value.pool is pool
    assert raised.value.url == "/x"
    assert isinstance(raised.value.reason, ResponseError)
    assert str(raised.value.reason) == "no time left to retry"
    assert retry.made.count == 0


def test_a_retry_after_that_ends_before_the_deadline_is_granted(clock):
    retry = policy(NOW + 6)
    retry.increment(method="GET", url="/x", response=answer(429, **{"Retry-After": "5"}))
    assert retry.made.count == 1


def test_a_retry_due_exactly_at_the_deadline_is_refused(clock):
    # The first retry is immediate (no backoff, no jitter): it would start at the deadline itself.
    with pytest.raises(MaxRetryError):
        policy(NOW).increment(method="GET", url="/x", response=answer(503))


def test_a_refused_retry_after_a_connection_error_keeps_that_error_as_the_reason(clock):
    error = ConnectionResetError(104, "reset")
    with pytest.raises(MaxRetryError) as raised:
        policy(NOW).increment(method="GET", url="/x", error=error)
    assert raised.value.reason is error


# --- _DeadlineCutter --------------------------------------------------------------------------


@pytest.fixture
def watchdog():
    """A watchdog without its thread: the test calls `run_once()` when it means to."""
    return client_module._Watchdog("test-deadlines", autostart=False)


def test_cutter_is_the_active_one_and_registered_only_inside_its_block(watchdog):
    cutter = _DeadlineCutter(time.monotonic() + 60, watchdog)
    with cutter as entered:
        assert entered is cutter
        assert client_module._ACTIVE.cutter is cutter
        assert watchdog.pending() == 1
    assert client_module._ACTIVE.cutter is None
    assert (watchdog.pending(), watchdog.entries()) == (0, 0)
    assert cutter._entry is None  # and the entry no longer holds the cutter: no cycle left


def test_the_watchdog_cuts_a_fetch_whose_deadline_has_come(clock, watchdog, pair):
    with _DeadlineCutter(NOW - 1, watchdog) as cutter:
        cutter.watch(pair[0])
        assert watchdog.run_once() is True
        assert cutter._cut is True
        assert is_shut_down(pair[0])
        assert (watchdog.pending(), watchdog.entries()) == (0, 0)
    assert watchdog.entries() == 0  # leaving after the cut unregisters nothing twice


def test_the_watchdog_leaves_a_fetch_alone_before_its_deadline(clock, watchdog, pair):
    # The clock stands still: the short real wait ends with the deadline still ahead.
    with _DeadlineCutter(NOW + 0.01, watchdog) as cutter:
        cutter.watch(pair[0])
        watchdog.run_once()
        assert cutter._cut is False
        assert not is_shut_down(pair[0])
        assert watchdog.pending() == 1


def test_the_watchdog_cuts_in_deadline_order_and_skips_ended_fetches(clock, watchdog):
    late = _DeadlineCutter(NOW - 1, watchdog).__enter__()
    early = _DeadlineCutter(NOW - 3, watchdog).__enter__()
    ended = _DeadlineCutter(NOW - 5, watchdog)
    ended.__enter__()
    ended.__exit__(None, None, None)
    watchdog.run_once()
    assert (early._cut, late._cut, ended._cut) == (True, False, False)
    watchdog.run_once()
    assert late._cut is True
    for cutter in (late, early):
        cutter.__exit__(None, None, None)
    assert watchdog.entries() == 0


def test_the_heap_does_not_grow_with_the_fetches_made(watchdog):
    # One long fetch at the top keeps ended entries from being dropped there: compaction must.
    with _DeadlineCutter(time.monotonic() + 3600, watchdog):
        for n in range(20_000):
            with _DeadlineCutter(time.monotonic() + 7200 + n, watchdog):
                pass
            assert watchdog.entries() <= 2 * (watchdog._COMPACT_MIN + 1)
        assert watchdog.pending() == 1
    assert watchdog.entries() == 0


def test_a_cut_that_fails_does_not_end_the_watchdog_thread(clock, watchdog, monkeypatch, caplog):
    calls = iter([RuntimeError("boom"), True, False])

    def run_once():
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(watchdog, "run_once", run_once)
    client_module._watch_deadlines(watchdog)  # returns once run_once says the thread stops
    assert next(calls, "all used") == "all used"
    assert "cutting a fetch at its deadline failed" in caplog.text


def test_a_stopped_watchdog_thread_ends():
    watchdog = client_module._Watchdog("test-deadlines-stop")
    with _DeadlineCutter(time.monotonic() + 3600, watchdog):
        [thread] = [t for t in threading.enumerate() if t.name == "test-deadlines-stop"]
        assert thread.daemon is True
    watchdog.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_cut_shuts_down_every_watched_socket(pair):
    other_pair = socket.socketpair()
    try:
        cutter = _DeadlineCutter(1e12)
        cutter.watch(pair[0])
        cutter.watch(other_pair[0])
        assert not is_shut_down(pair[0])
        cutter.cut()
        assert cutter._cut is True
        assert is_shut_down(pair[0])
        other_pair[0].setblocking(False)
        assert is_shut_down(other_pair[0])
    finally:
        for end in other_pair:
            end.close()


def test_a_socket_watched_after_the_cut_is_shut_down_at_once(pair):
    cutter = _DeadlineCutter(1e12)
    cutter.cut()
    cutter.watch(pair[0])
    assert is_shut_down(pair[0])


def test_watching_no_socket_is_a_no_op():
    cutter = _DeadlineCutter(1e12)
    cutter.watch(None)
    assert cutter._sockets == []
    cutter.cut()  # nothing to shut down, and no error


def test_shutdown_closes_both_directions(pair):
    client_module._shutdown(pair[0])
    assert is_shut_down(pair[0])
    with pytest.raises(BrokenPipeError):
        pair[0].send(b"x")
    assert pair[1].recv(1) == b""  # the peer sees the end too


def test_shutdown_of_a_closed_socket_is_ignored():
    sock = socket.socket()
    sock.close()
    client_module._shutdown(sock)


def test_watch_registers_with_the_active_cutter(monkeypatch, pair):
    cutter = _DeadlineCutter(1e12)
    monkeypatch.setattr(client_module._ACTIVE, "cutter", cutter, raising=False)
    client_module._watch(pair[0])
    assert cutter._sockets == [pair[0]]


def test_watch_without_an_active_cutter_does_nothing(monkeypatch, pair):
    monkeypatch.setattr(client_module._ACTIVE, "cutter", None, raising=False)
    client_module._watch(pair[0])
    monkeypatch.delattr(client_module._ACTIVE, "cutter")
    client_module._watch(pair[0])
    assert not is_shut_down(pair[0])


# --- the cuttable connections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_class", "base"),
    [(_CuttableHTTPConnection, HTTPConnection), (_CuttableHTTPSConnection, HTTPSConnection)],
)
def test_a_connection_hands_its_socket_to_the_cutter_before_reading_the_answer(
    monkeypatch, pair, connection_class, base
):
    cutter = _DeadlineCutter(1e12)
    monkeypatch.setattr(client_module._ACTIVE, "cutter", cutter, raising=False)
    watched_when_read: list[list[socket.socket]] = []

    def read_answer(self):
        watched_when_read.append(list(cutter._sockets))
        return "the answer"

    monkeypatch.setattr(base, "getresponse", read_answer)
    connection = connection_class("127.0.0.1", 1)
    connection.sock = pair[0]
    assert connection.getresponse() == "the answer"
    assert watched_when_read == [[pair[0]]]


def test_pools_make_cuttable_connections():
    assert _CuttableHTTPPool.ConnectionCls is _CuttableHTTPConnection
    assert _CuttableHTTPSPool.ConnectionCls is _CuttableHTTPSConnection


def test_the_client_adapter_uses_the_cuttable_pools_for_both_schemes():
    adapter = ApiClient("http://127.0.0.1:1", Secret("k"))._adapter
    assert adapter.poolmanager.pool_classes_by_scheme == {
        "http": _CuttableHTTPPool,
        "https": _CuttableHTTPSPool,
    }
    pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")
    assert isinstance(pool, _CuttableHTTPPool)


def test_the_adapter_keeps_the_pool_options_it_is_given():
    adapter = client_module._CuttableAdapter(pool_connections=3, pool_maxsize=5, pool_block=True)
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 5
    assert adapter.poolmanager.connection_pool_kw["block"] is True


def test_retry_policy_takes_positional_arguments_like_urllib3s():
    assert DeadlineRetry(1).total == 1


# --- the request ------------------------------------------------------------------------------


def test_each_request_is_bounded_by_a_timeout_that_tracks_the_deadline(monkeypatch):
    api = ApiClient("http://127.0.0.1:1", Secret("k"))
    sent: list[dict] = []

    def record(url, **kwargs):
        sent.append(kwargs)
        return "the response"

    monkeypatch.setattr(api._session, "get", record)
    assert api._send("http://127.0.0.1:1/x", 1234.5) == "the response"
    timeout = sent[0]["timeout"]
    assert isinstance(timeout, client_module.DeadlineTimeout)
    assert timeout.deadline == 1234.5
    assert sent[0]["stream"] is True
    assert sent[0]["allow_redirects"] is False


def test_a_body_cut_short_as_incomplete_is_named_so():
    # urllib3's ProtocolError text: "Response ended prematurely" / "... incomplete ...".
    assert client_module._cause(Exception(OSError("read incomplete: 3 of 9 bytes"))) == (
        "incomplete body"
    )


def test_webhooks_are_fetched_with_the_scrape_timeout_given(monkeypatch):
    api = ApiClient("http://127.0.0.1:1", Secret("k"))
    calls: list[tuple] = []
    monkeypatch.setattr(api, "_fetch", lambda url, timeout: calls.append((url, timeout)))
    api.fetch_webhooks("acme", 2.5)
    assert calls == [("http://127.0.0.1:1/api/v1/subaccounts/acme/webhooks", 2.5)]
