"""`python -m bench`'s CPU-per-scrape measurement: the floor and the exporter's work alone each
run as a process of their own against the simulator, fetching every subaccount once."""

from __future__ import annotations

from bench import cost, run
from exporter.simulator import Simulator

FROZEN = 1_700_000_000.0
NAMES = ["bench-0000", "bench-0001", "bench-0002"]


def test_the_floor_and_the_work_alone_each_fetch_every_subaccount_once():
    with Simulator(
        dict.fromkeys(NAMES, 20), cost.API_KEY, seed=cost.SEED, clock=lambda: FROZEN
    ) as sim:
        floor = cost.floor_cpu(sim.base_url, NAMES)
        after_floor = [sim.request_count(name) for name in NAMES]
        alone = cost.work_alone_cpu(sim.base_url, NAMES)
        after_both = [sim.request_count(name) for name in NAMES]
    assert after_floor == [1, 1, 1]
    assert after_both == [2, 2, 2]
    assert floor > 0
    assert alone > 0


def test_the_work_alone_is_printed_beside_the_exporter_and_the_floor():
    table = run.cost_table(
        {
            "subaccounts": 1_000,
            "floor_cpu": 1.5,
            "first_cpu": 5.0,
            "exporter_cpu": 4.0,
            "exporter_cpu_median": 4.5,
            "ratio": 4.0 / 1.5,
            "work_alone_cpu": 3.0,
            "work_alone_ratio": 2.0,
            "profile": [],
        }
    )
    rows = dict(line.rsplit("  ", 1) for line in table.splitlines()[1:])
    rows = {label.strip(): value.strip() for label, value in rows.items()}
    assert rows["exporter's work alone, one subaccount after the other: best"] == "3.00 s"
    assert rows["work alone / floor (no threads, no server)"] == "2.00 x"
    assert rows["exporter / floor"] == "2.67 x"
