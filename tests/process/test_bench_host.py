"""`python -m bench` prints the share of CPU time the VM's host took (steal) beside the
wall-clock figures it slows down, read from /proc/stat."""

from __future__ import annotations

import time

import pytest

from bench import host, run


def stat_line(user, system, idle, steal):
    # user nice system idle iowait irq softirq steal guest guest_nice
    return f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_the_share_stolen_is_steal_over_all_cpu_time_meanwhile(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(stat_line(1_000, 100, 5_000, 50))
    with host.Stolen(stat) as stolen:
        # 300 ticks busy, 500 idle, 200 stolen
        stat.write_text(stat_line(1_250, 150, 5_500, 250))
    assert stolen.share == pytest.approx(200 / 1_000)
    assert stolen.seconds == pytest.approx(200 / host.os.sysconf("SC_CLK_TCK"))


@pytest.mark.parametrize("content", ["", "intr 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2\n"])
def test_an_unreadable_stat_gives_no_share(tmp_path, content):
    stat = tmp_path / "stat"
    stat.write_text(content)
    with host.Stolen(stat) as stolen:
        pass
    assert stolen.share is None
    with host.Stolen(tmp_path / "missing") as stolen:
        pass
    assert stolen.share is None


def test_this_machine_reports_a_share():
    with host.Stolen() as stolen:
        start = host.cpu_ticks()
        assert start is not None
        # until the machine's tick counts move (a tick is 1/100 s on Linux), at most 30 s
        deadline = time.monotonic() + 30
        while host.cpu_ticks() == start and time.monotonic() < deadline:
            sum(range(10_000))
    assert stolen.share is not None
    assert 0.0 <= stolen.share <= 1.0


def many_run(stolen_share):
    return {
        "subaccounts": 1_000,
        "numbers": 100,
        "latency": 0.2,
        "first": 7.9,
        "second": 8.7,
        "up": 961,
        "up_second": 852,
        "gzip_bytes": 14_975_499,
        "rss": {"idle": 42_586_112, "peak": 218_243_072, "after": 198_299_648},
        "threads_after": 74,
        "threads_peak": 74,
        "stolen_share": stolen_share,
    }


def test_the_many_table_prints_the_most_stolen_in_a_run():
    table = run.many_table({"1000x100@0.2s": [many_run(0.12), many_run(0.31), many_run(None)]})
    row = next(line for line in table.splitlines() if line.startswith("CPU the host took"))
    assert row.split()[-1] == "31%"
    older = many_run(None)
    del older["stolen_share"]  # results written before the share was measured
    table = run.many_table({"1000x100@0.2s": [older]})
    row = next(line for line in table.splitlines() if line.startswith("CPU the host took"))
    assert row.split()[-1] == "?"
