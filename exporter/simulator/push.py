"""Callbacks the simulator pushes, as 8x8 would: VNU as numbers change, VSS as calls end.

Every `interval` seconds the sender compares each subaccount's inventory with what it last
pushed and sends a VIRTUAL_NUMBER_UPDATE (a SNAPSHOT first, then UPDATES with the changed
numbers; a number whose health check fails is pushed as `Unhealthy`), then a few
SESSION_SUMMARY events of simulated calls on the subaccount's numbers. The content is a
function of the seed, the subaccount and a per-subaccount sequence number; only the moments
of sending follow the wall clock.

Fault modes (`PushFaults`): `wrong_auth` sends another Authorization value, `malformed` sends
broken JSON instead of the events, `duplicate` delivers every event twice, `burst` adds that
many call sessions per interval, `bad_quality` makes every call's quality poor (MOS ~2),
`failing` makes every session fail, and `unhealthy` pushes the listed numbers as Unhealthy.

Session shapes follow 8x8's Number Masking page: a COMPLETED session has two completed legs
(the caller's INBOUND leg A to the virtual number, the forwarded OUTBOUND leg B from it); a
BUSY, NO_ANSWER or FAILED session has leg A COMPLETED and leg B carrying the failure; a
CANCELED or ERROR session has leg A alone.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from exporter.simulator.inventory import format_ms

log = logging.getLogger("exporter.simulator")

_ENCODER = msgspec.json.Encoder()
_SESSION_STATUSES = [
    ("COMPLETED", 85),
    ("NO_ANSWER", 5),
    ("BUSY", 3),
    ("CANCELED", 3),
    ("FAILED", 4),
]
_OUTCOME_ON_B = frozenset({"BUSY", "NO_ANSWER", "FAILED"})
_ERRORS = ((-2004, "No coverage available for requested area"), (-2010, "Trunk capacity exceeded"))
_MALFORMED = b'{"eventType": "SESSION_SUMMARY", "payload": {"sessionId": '
SNAPSHOT_EVERY = 600.0  # seconds between full snapshots, so a restarted receiver catches up


@dataclass(frozen=True)
class PushFaults:
    wrong_auth: bool = False
    malformed: bool = False
    duplicate: bool = False
    burst: int = 0
    bad_quality: bool = False
    failing: bool = False
    unhealthy: tuple[str, ...] = ()


@dataclass
class PushStats:
    sent: int = 0
    failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


Snapshot = Callable[[str], dict[str, Any]]


class PushSender:
    """Sends callbacks for the given subaccounts to `url` in a background thread."""

    def __init__(
        self,
        subaccounts: list[str],
        snapshot: Snapshot,
        url: str,
        auth_header: str,
        *,
        seed: int = 1,
        interval: float = 1.0,
        sessions_per_interval: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.subaccounts = list(subaccounts)
        self.snapshot = snapshot
        self.url = url
        self.auth_header = auth_header
        self.seed = seed
        self.interval = interval
        self.sessions_per_interval = sessions_per_interval
        self.clock = clock
        self.stats = PushStats()
        self._faults = PushFaults()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pushed: dict[str, dict[str, tuple[str, str]]] = {}
        self._last_snapshot: dict[str, float] = {}
        self._sequence: dict[str, int] = dict.fromkeys(self.subaccounts, 0)
        self._last_stamp_ms = 0

    # ---- control ----

    def set_faults(self, **faults: Any) -> None:
        if "unhealthy" in faults:
            faults["unhealthy"] = tuple(faults["unhealthy"])
        with self._lock:
            self._faults = replace(PushFaults(), **faults)

    def faults(self) -> PushFaults:
        with self._lock:
            return self._faults

    def start(self) -> PushSender:
        self._thread = threading.Thread(target=self._run, name="simulator-push", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - a push problem never stops the simulator
                log.warning("push failed", extra={"fields": {"err": type(exc).__name__}})
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    # ---- one round ----

    def tick(self) -> None:
        """One round: a VNU per subaccount whose numbers changed, then the calls."""
        faults = self.faults()
        for sub in self.subaccounts:
            numbers = self._numbers(sub, faults)
            previous = self._pushed.get(sub)
            vnu = self._number_update(sub, numbers)
            if vnu is not None and not self._send(vnu, faults):
                # Not delivered: like 8x8, tell the receiver again on the next round.
                if previous is None:
                    self._pushed.pop(sub, None)
                else:
                    self._pushed[sub] = previous
            count = self.sessions_per_interval + faults.burst
            for _ in range(count):
                self._send(self._session(sub, numbers, faults), faults)

    def _numbers(self, sub: str, faults: PushFaults) -> list[dict[str, Any]]:
        body = self.snapshot(sub)
        numbers = [n for n in body.get("numbers", []) if isinstance(n, dict) and "msisdn" in n]
        forced = set(faults.unhealthy)
        for number in numbers:
            health = number.get("numberHealth") or {}
            if number["msisdn"] in forced or (
                number.get("numberHealthCheckEnabled") and health.get("isHealthy") is False
            ):
                number["operationalStatus"] = "Unhealthy"
        return numbers

    def _stamp(self) -> str:
        """Now in 8x8's format, strictly increasing, so a newer push always wins."""
        ms = max(int(self.clock() * 1000), self._last_stamp_ms + 1)
        self._last_stamp_ms = ms
        return format_ms(ms)

    def _number_update(self, sub: str, numbers: list[dict[str, Any]]) -> dict[str, Any] | None:
        previous = self._pushed.get(sub)
        now = self.clock()
        snapshot = previous is None or now - self._last_snapshot.get(sub, 0.0) >= SNAPSHOT_EVERY
        current: dict[str, tuple[str, str]] = {}
        records = []
        for number in numbers:
            msisdn = number["msisdn"]
            status = number.get("operationalStatus", "Active")
            old = (previous or {}).get(msisdn)
            changed = old is None or old[0] != status
            stamp = old[1] if old is not None and not changed else None
            if stamp is None:
                stamp = (
                    self._stamp()
                    if previous is not None
                    else max(
                        number.get("dateUpdated", ""),
                        (number.get("numberHealth") or {}).get("lastCheckedTime", ""),
                    )
                    or self._stamp()
                )
            current[msisdn] = (status, stamp)
            if snapshot or changed:
                records.append(_vnu_record(number, status, stamp, changed))
        self._pushed[sub] = current
        if snapshot:
            self._last_snapshot[sub] = now
        elif not records:
            return None
        return {
            "namespace": "VOICE",
            "eventType": "VIRTUAL_NUMBER_UPDATE",
            "description": "Status of account virtual number(s) updated",
            "payload": {
                "subAccountId": sub,
                "totalNumbers": len(numbers),
                "updateEventType": "SNAPSHOT" if snapshot else "UPDATES",
                "virtualNumbers": records,
            },
        }

    def _session(self, sub: str, numbers: list[dict[str, Any]], faults: PushFaults) -> dict:
        sequence = self._sequence[sub] = self._sequence.get(sub, 0) + 1
        rng = random.Random(f"8x8-simulator-push:{self.seed}:{sub}:{sequence}")  # noqa: S311
        usable = [n for n in numbers if n.get("operationalStatus") != "Inactive"] or numbers
        number = usable[rng.randrange(len(usable))] if usable else None
        msisdn = number["msisdn"] if number else "+6500000000"
        country = number.get("countryCode", "SG") if number else "SG"
        reference = number.get("referenceId") if number else None
        status, error = _session_outcome(rng, sequence, faults.failing)
        poor = faults.bad_quality or (number or {}).get("operationalStatus") == "Unhealthy"
        end = self.clock()
        duration = rng.randint(20, 400) if status == "COMPLETED" else 0
        start = end - duration - rng.uniform(2, 12)
        caller = f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}"
        callee = f"+65{rng.randrange(80_000_000, 99_999_999)}"
        # Number masking, as 8x8 documents it: the caller's leg (A) reaches 8x8 and completes;
        # the forwarded leg (B) carries a busy, unanswered or failed outcome. A caller who hangs
        # up first, or a platform error, leaves the one leg A.
        two_legs = status in _OUTCOME_ON_B or status == "COMPLETED"
        status_a = "COMPLETED" if two_legs else status
        leg_a = _leg(rng, "INBOUND", caller, msisdn, "US", country, start, end, status_a, poor)
        leg_a["destinationRefId"] = reference
        details = {"callA": leg_a}
        if two_legs:
            leg_b = _leg(rng, "OUTBOUND", msisdn, callee, country, "SG", start, end, status, poor)
            leg_b["sourceRefId"] = reference
            details["callB"] = leg_b
        payload: dict[str, Any] = {
            "sessionId": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
            "subAccountId": sub,
            "sessionStatus": status,
            "startTime": format_ms(int(start * 1000)),
            "endTime": format_ms(int(end * 1000)),
            "lastAction": "MAKE_CALL",
            "callCount": len(details),
            "details": details,
        }
        if error is not None:
            payload["errorDetails"] = {"errorCode": error[0], "errorMsg": error[1]}
        return {
            "namespace": "VOICE",
            "eventType": "SESSION_SUMMARY",
            "description": "Summary of a completed call session",
            "payload": payload,
        }

    # ---- delivery ----

    def _send(self, event: dict[str, Any], faults: PushFaults) -> bool:
        """Deliver (twice with `duplicate`); True if the receiver took it."""
        body = _MALFORMED if faults.malformed else _ENCODER.encode(event)
        auth = "Bearer not-the-registered-value" if faults.wrong_auth else self.auth_header
        results = [self._post(body, auth) for _ in range(2 if faults.duplicate else 1)]
        return any(results)

    def _post(self, body: bytes, auth: str) -> bool:
        request = urllib.request.Request(  # noqa: S310 - the URL is configured, http(s) only
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310
                status = str(response.status)
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
        except (OSError, ValueError) as exc:
            status = type(exc).__name__
        with self._lock:
            self.stats.sent += 1
            if not status.startswith("2"):
                self.stats.failed += 1
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        return status.startswith("2")


def _session_outcome(
    rng: random.Random, sequence: int, failing: bool
) -> tuple[str, tuple[int, str] | None]:
    if failing or sequence % 20 == 5:
        code = _ERRORS[rng.randrange(len(_ERRORS))]
        return "ERROR", code
    total = sum(weight for _, weight in _SESSION_STATUSES)
    pick = rng.randrange(total)
    for status, weight in _SESSION_STATUSES:
        pick -= weight
        if pick < 0:
            return status, None
    return "COMPLETED", None


def _vnu_record(number: dict[str, Any], status: str, stamp: str, changed: bool) -> dict:
    return {
        "msisdn": number["msisdn"],
        "updatedTimestamp": stamp,
        "countryCode": number.get("countryCode"),
        "operationalStatus": status,
        "referenceId": number.get("referenceId"),
        "rentalPrice": number.get("rentalPrice"),
        "incomingRate": number.get("incomingRate"),
        "billingUnit": number.get("billingUnit"),
        "billingCurrency": number.get("billingCurrency"),
        "numberHealthCheckEnabled": number.get("numberHealthCheckEnabled"),
        "updateStatus": "UPDATED" if changed else "NO_CHANGE",
    }


def _leg(
    rng: random.Random,
    direction: str,
    source: str,
    destination: str,
    source_country: str,
    destination_country: str,
    start: float,
    end: float,
    status: str,
    poor: bool,
) -> dict[str, Any]:
    connected = status == "COMPLETED"
    leg: dict[str, Any] = {
        "callId": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
        "callDirection": direction,
        "callType": "PSTN",
        "initiatedTimestamp": format_ms(int(start * 1000)),
        "disconnectedTimestamp": format_ms(int(end * 1000)),
        "source": source,
        "destination": destination,
        "sourceFormat": "MSISDN",
        "destinationFormat": "MSISDN",
        "sourceCountryCode": source_country,
        "destinationCountryCode": destination_country,
        "callStatus": status,
        "callDuration": int(end - start) if connected else 0,
    }
    if connected:
        leg["connectedTimestamp"] = format_ms(int((start + rng.uniform(1, 8)) * 1000))
        if poor:
            mos, loss, jitter = rng.gauss(2.2, 0.3), rng.uniform(0.05, 0.15), rng.gauss(90, 20)
        else:
            mos, loss, jitter = rng.gauss(4.3, 0.15), rng.uniform(0.0, 0.01), rng.gauss(15, 5)
        leg["callQuality"] = {
            "mos": round(min(5.0, max(1.0, mos)), 2),
            "packetLossRate": round(loss, 4),
            "jitter": max(0, round(jitter)),
        }
    return leg
