"""A simulator of the 8x8 Virtual Numbers API (`GET /api/v1/subaccounts/{id}/numbers[/{number}]`).

It serves made-up but valid inventories that evolve with time, deterministically from a seed,
with exact fault injection for tests and demos. In process:

    from exporter.simulator import Simulator
    with Simulator(subaccounts={"acme-prod": 60}, api_key="k", seed=1) as sim:
        sim.base_url, sim.admin_url, sim.snapshot("acme-prod")

Standalone: `python -m exporter.simulator --help` (also `eightbyeight-exporter simulate`).
"""

from exporter.simulator.faults import FaultError
from exporter.simulator.inventory import list_body
from exporter.simulator.scenario import ScenarioError
from exporter.simulator.server import Simulator

__all__ = ["FaultError", "ScenarioError", "Simulator", "list_body"]
