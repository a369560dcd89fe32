"""The prepaid balance: `GET {balance base}/api/v1/accounts/{accountId}/balance`.

Read on its own schedule, never on the scrape's budget: a /metrics request starts a read in
the background when the last one began `interval` ago or more (one at a time, cut off after
`timeout`), and /metrics shows the last good answer. A failed read keeps it, sets
`eightbyeight_account_balance_up` to 0 and counts the reason; it never fails a scrape or
changes `eightbyeight_up`. Accounts not in prepaid mode answer 403 (code 1201): `forbidden`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec
from prometheus_client.core import Metric

from exporter.common.errors import REASONS, FetchError, ResponseError
from exporter.common.logs import log_event
from exporter.metrics import catalogue as c
from exporter.metrics.instruments import counter_family, gauge_family
from exporter.polling.model import error_reason

log = logging.getLogger("exporter.balance")


class BalanceClient(Protocol):
    """What reading the balance needs of the API client (exporter.polling.client.ApiClient)."""

    def fetch_balance(self, account_id: str, timeout: float | None = None) -> bytes | bytearray: ...


class _Balance(msgspec.Struct, rename="camel"):
    balance: float | None = None
    currency: str | None = None
    code: int | str | None = None
    status_code: int | str | None = None


_decoder = msgspec.json.Decoder(_Balance)


def read_balance(body: bytes | bytearray) -> tuple[float, str]:
    """(balance, currency) of an answer; ResponseError for an error envelope or odd values."""
    try:
        answer = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ResponseError("invalid_response", "not a balance answer") from None
    for code in (answer.code, answer.status_code):
        reason = error_reason(code)
        if reason is not None:
            raise ResponseError(reason, f"error envelope {code}")
    if answer.balance is None or not math.isfinite(answer.balance):
        raise ResponseError("invalid_response", "no balance in the answer")
    currency = (answer.currency or "").strip().upper()
    if not (len(currency) == 3 and currency.isalpha()):
        raise ResponseError("invalid_response", "no ISO 4217 currency in the answer")
    return answer.balance, currency


class BalanceCollector:
    """The last balance read; a prometheus_client collector that schedules its own reads."""

    def __init__(
        self,
        client: BalanceClient,
        account_id: str,
        interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.account_id = account_id
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._running = False
        self._started: float | None = None
        self._value: tuple[float, str] | None = None
        self._up: bool | None = None
        self._last_success: float | None = None
        self._failures = dict.fromkeys(REASONS, 0)

    def start_read(self) -> threading.Thread | None:
        """Start a background read if none runs and the last began `interval` ago or more."""
        now = self.clock()
        with self._lock:
            if self._running or (self._started is not None and now - self._started < self.interval):
                return None
            self._running, self._started = True, now
        thread = threading.Thread(target=self._read, name="balance", daemon=True)
        thread.start()
        return thread

    def use_client(self, client: BalanceClient) -> None:
        """Read with `client` from now on (a reload changed the key), starting at the next
        collect: the last answer was read with the old one."""
        with self._lock:
            self.client, self._started = client, None

    def _read(self) -> None:
        client = self.client
        try:
            value = read_balance(client.fetch_balance(self.account_id, self.timeout))
        except (FetchError, ResponseError) as exc:
            self._failed(exc.reason)
        except Exception as exc:  # noqa: BLE001 - an optional read never ends the process
            log_event(log, logging.WARNING, "reading the balance failed", err=type(exc).__name__)
            self._failed("invalid_response")
        else:
            with self._lock:
                self._value, self._up, self._last_success = value, True, self.wall()
        finally:
            with self._lock:
                self._running = False

    def _failed(self, reason: str) -> None:
        log_event(log, logging.WARNING, "reading the balance failed", reason=reason)
        with self._lock:
            self._up = False
            self._failures[reason if reason in self._failures else "invalid_response"] += 1

    def collect(self) -> Iterator[Metric]:
        self.start_read()
        with self._lock:
            value, up, last, failures = (
                self._value,
                self._up,
                self._last_success,
                dict(self._failures),
            )
        balance = gauge_family(c.ACCOUNT_BALANCE)
        if value is not None:
            balance.add_metric([value[1]], value[0])
        yield balance
        up_family = gauge_family(c.ACCOUNT_BALANCE_UP)
        if up is not None:
            up_family.add_metric([], 1.0 if up else 0.0)
        yield up_family
        success = gauge_family(c.ACCOUNT_BALANCE_LAST_SUCCESS_TIMESTAMP_SECONDS)
        if last is not None:
            success.add_metric([], last)
        yield success
        failed = counter_family(c.ACCOUNT_BALANCE_READ_FAILURES)
        for reason, count in failures.items():
            failed.add_metric([reason], count)
        yield failed

    def describe(self) -> list[Any]:
        return []
