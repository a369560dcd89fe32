"""`python -m bench`: the idle-connection targets printed with its other targets, and the
OpenMetrics and text scrapes taking turns at going first."""

from __future__ import annotations

from bench import run, scrape

IDLE = {
    "idle_connections": 3_000,
    "webhook_connections_open": 128,
    "metrics_seconds_without_idle": 0.004,
    "metrics_seconds_median": 0.008,
    "metrics_seconds_max": 0.015,
    "threads_added": 14,
    "max_threads": 14,
}


def verdicts(idle):
    return {t["target"]: (t["value"], t["met"]) for t in run.targets({}, idle=idle)}


def test_idle_connection_targets_are_judged_with_the_others():
    found = verdicts(IDLE)
    case = "3,000 idle connections on the callback port"
    assert found[f"{case}: slowest /metrics answer, s"] == (0.015, True)
    assert found[f"{case}: listener threads"] == (14, True)
    slow = verdicts({**IDLE, "metrics_seconds_max": 1.2, "threads_added": 15})
    assert slow[f"{case}: slowest /metrics answer, s"] == (1.2, False)
    assert slow[f"{case}: listener threads"] == (15, False)


def test_without_the_measurement_there_is_no_idle_connection_target():
    assert not any("idle connections" in name for name in verdicts(None))


def test_the_table_shows_the_answers_and_the_bound():
    table = run.connections_table(IDLE)
    assert "3,000" in table
    assert "15.0 ms" in table
    assert "14 (14)" in table


def test_format_pairs_take_turns_going_first_and_come_back_in_one_order():
    asked: list[str] = []

    class Proc:
        def timed_scrape(self, text_only: bool = False):
            asked.append("text" if text_only else "openmetrics")
            return asked[-1], 0.01

    pairs = [scrape._format_pair(Proc(), openmetrics_first=turn % 2 == 0) for turn in range(2)]
    assert asked == ["openmetrics", "text", "text", "openmetrics"]
    assert [(om[0], text[0]) for om, text in pairs] == [("openmetrics", "text")] * 2
