"""The simulated inventory is a pure function of (seed, subaccount, count, time) that evolves
realistically: checks advance, health flips and recovers, statuses move, lastUpdatedAt moves,
demo guarantees hold at all times, and the served body is built once per tick."""

from __future__ import annotations

import collections
import datetime
import threading

import pytest
import requests

from exporter.simulator import Simulator, inventory, list_body

KEY = "k-state"
AUTH = {"Authorization": f"Bearer {KEY}"}
T0 = 1_795_000_000.0
BASE = "http://sim.test"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def by_msisdn(body: dict) -> dict[str, dict]:
    return {r["msisdn"]: r for r in body["numbers"]}


def test_same_seed_and_time_give_the_same_body():
    assert list_body(3, "acme", 60, T0, BASE) == list_body(3, "acme", 60, T0, BASE)


def test_seed_and_subaccount_change_the_inventory():
    reference = by_msisdn(list_body(3, "acme", 60, T0, BASE))
    assert by_msisdn(list_body(4, "acme", 60, T0, BASE)).keys() != reference.keys()
    assert by_msisdn(list_body(3, "other", 60, T0, BASE)).keys() != reference.keys()


def test_two_servers_with_the_same_seed_serve_identical_bytes():
    bodies = []
    for _ in range(2):
        with Simulator({"acme-prod": 60}, KEY, seed=11, clock=FakeClock(T0)) as sim:
            url = f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers"
            body = requests.get(url, headers=AUTH, timeout=10).json()
            # uri embeds the (random) port; everything else must be equal.
            for record in body["numbers"]:
                record["uri"] = record["uri"].split("/api/", 1)[1]
            bodies.append(body)
    assert bodies[0] == bodies[1]


def test_values_within_one_tick_are_identical_and_computed_at_its_start():
    start = inventory.tick_start(T0)
    assert list_body(1, "acme", 60, start, BASE) == list_body(1, "acme", 60, start + 4.9, BASE)
    body = list_body(1, "acme", 60, start + 4.9, BASE)
    checks = [
        ts(r["numberHealth"]["lastCheckedTime"]) for r in body["numbers"] if r.get("numberHealth")
    ]
    assert max(checks) < start


def test_last_checked_time_advances_and_check_age_stays_bounded():
    previous = by_msisdn(list_body(2, "acme", 60, T0, BASE))
    for step in range(1, 50):
        now = T0 + step * 97
        current = by_msisdn(list_body(2, "acme", 60, now, BASE))
        for msisdn, record in current.items():
            health = record.get("numberHealth")
            if not record["numberHealthCheckEnabled"]:
                continue
            age = now - ts(health["lastCheckedTime"])
            assert 0 < age <= 300 + inventory.TICK_SECONDS, (msisdn, age)
            before = previous[msisdn]["numberHealth"]["lastCheckedTime"]
            assert ts(health["lastCheckedTime"]) >= ts(before)
        previous = current
    later = by_msisdn(list_body(2, "acme", 60, T0 + 600, BASE))
    first = by_msisdn(list_body(2, "acme", 60, T0, BASE))
    for msisdn, record in later.items():
        if record["numberHealthCheckEnabled"]:
            assert ts(record["numberHealth"]["lastCheckedTime"]) > ts(
                first[msisdn]["numberHealth"]["lastCheckedTime"]
            )


def test_health_flips_and_recovers_within_an_hour():
    flips = collections.Counter()
    previous = by_msisdn(list_body(5, "acme", 60, T0, BASE))
    for step in range(1, 13):
        current = by_msisdn(list_body(5, "acme", 60, T0 + step * 300, BASE))
        for msisdn, record in current.items():
            if record["numberHealthCheckEnabled"]:
                was = previous[msisdn]["numberHealth"]["isHealthy"]
                now = record["numberHealth"]["isHealthy"]
                if was != now:
                    flips["recovered" if now else "failed"] += 1
        previous = current
    assert flips["failed"] >= 1
    assert flips["recovered"] >= 1


def test_last_updated_at_moves_forward_and_covers_every_number():
    stamps = []
    for step in range(20):
        now = T0 + step * 60
        body = list_body(6, "acme", 60, now, BASE)
        last = ts(body["lastUpdatedAt"])
        assert last <= now
        for record in body["numbers"]:
            assert ts(record["dateUpdated"]) <= last
            if record.get("numberHealth"):
                assert ts(record["numberHealth"]["lastCheckedTime"]) <= last
        stamps.append(last)
    assert stamps == sorted(stamps)
    assert len(set(stamps)) > 10


def test_operational_status_moves_over_weeks_and_date_updated_follows():
    seen = collections.defaultdict(set)
    updated = collections.defaultdict(set)
    for day in range(0, 60, 2):
        for record in list_body(8, "acme", 60, T0 + day * 86_400, BASE)["numbers"]:
            seen[record["msisdn"]].add(record["operationalStatus"])
            updated[record["msisdn"]].add(record["dateUpdated"])
    changing = [m for m, statuses in seen.items() if len(statuses) > 1]
    assert len(changing) >= 10
    assert any({"Active", "Expiring"} <= seen[m] for m in changing)
    assert any("Inactive" in seen[m] and "Expiring" in seen[m] for m in changing)
    assert all(len(updated[m]) > 1 for m in changing)


def test_status_proportions_are_realistic_for_a_large_inventory():
    numbers = list_body(1, "acme-big", 10_000, T0, BASE)["numbers"]
    statuses = collections.Counter(r["operationalStatus"] for r in numbers)
    assert statuses["Active"] > 0.8 * len(numbers)
    assert 0.02 * len(numbers) < statuses["Expiring"] < 0.12 * len(numbers)
    assert 0.01 * len(numbers) < statuses["Inactive"] < statuses["Expiring"]
    enabled = sum(r["numberHealthCheckEnabled"] for r in numbers)
    assert 0.85 * len(numbers) < enabled < 0.95 * len(numbers)
    unhealthy = sum(
        1 for r in numbers if r.get("numberHealth") and not r["numberHealth"]["isHealthy"]
    )
    assert 0.002 * len(numbers) < unhealthy < 0.08 * len(numbers)
    assert {r["billingUnit"] for r in numbers} == {1, 60}
    assert {"USD", "EUR", "SGD"} <= {r["billingCurrency"] for r in numbers}
    assert len({r["referenceId"] for r in numbers}) > 50


@pytest.mark.parametrize("count", [20, 25, 60])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_guarantees_hold_at_all_times(seed, count):
    for step in range(150):
        now = T0 + step * 1_733  # ~3 days, never aligned with the 30 min role slots
        numbers = list_body(seed, "acme-demo", count, now, BASE)["numbers"]
        assert any(r["operationalStatus"] == "Expiring" for r in numbers), now
        assert any(r["operationalStatus"] == "Unhealthy" for r in numbers), now
        assert any(not r["numberHealthCheckEnabled"] for r in numbers), now
        assert any(r.get("numberHealth") and not r["numberHealth"]["isHealthy"] for r in numbers), (
            now
        )


def test_server_follows_the_injected_clock():
    clock = FakeClock(T0)
    with Simulator({"acme-prod": 60}, KEY, seed=4, clock=clock) as sim:
        url = f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers"
        first = requests.get(url, headers=AUTH, timeout=10).json()
        assert first == sim.snapshot("acme-prod")
        clock.now = T0 + 3_600
        later = requests.get(url, headers=AUTH, timeout=10).json()
        assert ts(later["lastUpdatedAt"]) > ts(first["lastUpdatedAt"])
        assert later == list_body(4, "acme-prod", 60, T0 + 3_600, sim.base_url)


def test_body_is_built_once_per_tick(monkeypatch):
    builds = []
    original = inventory.list_records

    def counting(*args, **kwargs):
        builds.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(inventory, "list_records", counting)
    clock = FakeClock(inventory.tick_start(T0))
    with Simulator({"acme-prod": 2_000}, KEY, clock=clock) as sim:
        url = f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers"
        bodies = set()
        for offset in (0, 1, 2.5, 4.9):
            clock.now = inventory.tick_start(T0) + offset
            bodies.add(requests.get(url, headers=AUTH, timeout=10).content)
        assert len(builds) == 1
        assert len(bodies) == 1
        clock.now = inventory.tick_start(T0) + 5
        requests.get(url, headers=AUTH, timeout=10)
        assert len(builds) == 2


def test_concurrent_requests_for_a_new_state_build_it_once(monkeypatch):
    builds = []
    original = inventory.list_records

    def counting(*args, **kwargs):
        builds.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(inventory, "list_records", counting)
    with Simulator({"acme-prod": 20_000}, KEY, clock=FakeClock(T0)) as sim:
        url = f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers"
        barrier = threading.Barrier(20)
        statuses = []

        def fetch():
            barrier.wait()
            statuses.append(requests.get(url, headers=AUTH, timeout=60).status_code)

        threads = [threading.Thread(target=fetch) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 20
        assert len(builds) == 1
        assert sim.request_count("acme-prod") == 20
