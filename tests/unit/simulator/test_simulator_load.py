"""Load: 100,000 numbers are generated and served (also to concurrent clients), and repeated
GETs of an unchanged state return the cached bytes. Asserts that it serves, not timings."""

from __future__ import annotations

import threading

import msgspec
import pytest
import requests

from exporter.simulator import Simulator

pytestmark = pytest.mark.slow

KEY = "k-load"
AUTH = {"Authorization": f"Bearer {KEY}"}
T0 = 1_795_000_000.0


def test_one_hundred_thousand_numbers_are_served_and_cached():
    with Simulator({"acme-big": 100_000}, KEY, seed=9, clock=lambda: T0) as sim:
        url = f"{sim.base_url}/api/v1/subaccounts/acme-big/numbers"
        first = requests.get(url, headers=AUTH, timeout=120)
        assert first.status_code == 200
        body = msgspec.json.decode(first.content)
        assert body["totalNumbers"] == 100_000
        assert len(body["numbers"]) == 100_000
        assert len({r["msisdn"] for r in body["numbers"]}) == 100_000
        assert body["statusCode"] == 0
        second = requests.get(url, headers=AUTH, timeout=120)
        assert second.content == first.content


def test_numbers_fault_scales_a_subaccount_for_concurrent_clients():
    with Simulator({"acme-prod": 60}, KEY, seed=9, clock=lambda: T0) as sim:
        sim.set_faults({"numbers": 100_000}, subaccount="acme-prod")
        url = f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers"
        lengths: list[int] = []
        barrier = threading.Barrier(4)

        def fetch() -> None:
            barrier.wait()
            response = requests.get(url, headers=AUTH, timeout=120)
            assert response.status_code == 200
            lengths.append(len(response.content))

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(lengths) == 4
        assert len(set(lengths)) == 1
        assert sim.stats()["subaccounts"]["acme-prod"]["max_in_flight"] >= 2
        sim.clear_faults()
        small = requests.get(url, headers=AUTH, timeout=30).json()
        assert small["totalNumbers"] == 60
