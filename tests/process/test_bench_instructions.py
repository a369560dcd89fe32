"""`python -m bench.instructions --stages`: each stage's count is what it adds to the ones before.

The counting itself is valgrind's (run by the benchmark, not here); these check what is counted:
a run up to stage k does the first k stages of the work and no more, and the steps between the
cumulative counts are reported per stage.
"""

from __future__ import annotations

import pytest

from bench import instructions
from exporter.metrics import encoding
from exporter.polling import exposition, model
from exporter.simulator import Simulator

FROZEN = 1_700_000_000.0


def test_each_stage_is_reported_as_what_it_adds(monkeypatch):
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")

    # Stage k of a mode costs 10**k per subaccount on top of a fixed start-up cost.
    def fake(valgrind, mode, count, base_url, names, stages=0):
        stages = stages or len(instructions.STAGES[mode])
        return 1_000_000 + count * sum(10**k for k in range(1, stages + 1))

    monkeypatch.setattr(instructions, "instructions", fake)
    out = instructions.measure(4, 10, by_stage=True)
    assert out["stages"]["floor"] == dict(
        zip(instructions.FLOOR_STAGES, [10.0, 100.0], strict=True)
    )
    assert list(out["stages"]["exporter"].values()) == [10.0, 100.0, 1e3, 1e4, 1e5]
    assert out["exporter"] == 111_110.0
    assert out["ratio"] == pytest.approx(111_110 / 110)


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5])
def test_a_run_up_to_a_stage_does_the_stages_before_it_and_no_more(monkeypatch, stages):
    calls: list[str] = []

    def spy(name, function):
        def spied(*args, **kwargs):
            calls.append(name if name != "render" else f"render per_number={kwargs['per_number']}")
            return function(*args, **kwargs)

        return spied

    monkeypatch.setattr(model, "parse_inventory", spy("parse", model.parse_inventory))
    monkeypatch.setattr(exposition, "render_inventory", spy("render", exposition.render_inventory))
    monkeypatch.setattr(encoding, "deflate_all", spy("deflate_all", encoding.deflate_all))
    names = [f"bench-{i:04d}" for i in range(instructions.WARM_UP)]
    with Simulator(dict.fromkeys(names, 5), instructions.API_KEY, clock=lambda: FROZEN) as sim:
        instructions.run_child("exporter", 2, sim.base_url, names, stages)
    runs = instructions.WARM_UP + 2
    expected = {
        1: [],
        2: ["parse"],
        3: ["parse", "render per_number=False"],
        4: ["parse", "render per_number=True"],
        5: ["parse", "render per_number=True", "deflate_all"],
    }[stages]
    assert calls == expected * runs
