"""How much CPU the VM's host took while a figure was measured (`/proc/stat`'s steal time).

On a shared VM the host may run other guests on this one's cores: the time stolen from it is
neither the exporter's nor idle, and every wall-clock figure taken meanwhile is slower by it. The
benchmark prints the share stolen beside the figures it distorts, so that a slow run can be told
apart from slow code.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# The fields of /proc/stat's `cpu` line, in order; all in clock ticks (USER_HZ).
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_ticks(stat: Path = PROC_STAT) -> dict[str, int] | None:
    """The whole machine's CPU time by kind, in ticks since boot; None where there is no
    /proc/stat (not Linux) or it reads differently."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[:1] != ["cpu"] or len(first) < 1 + len(_FIELDS):
        return None
    try:
        return dict(zip(_FIELDS, map(int, first[1 : 1 + len(_FIELDS)]), strict=True))
    except ValueError:
        return None


class Stolen:
    """`with Stolen() as stolen:` ... then `stolen.share`: the part of all CPU time (every core,
    busy or idle, and what the host took) that the host took meanwhile; None if unknown."""

    def __init__(self, stat: Path = PROC_STAT) -> None:
        self._stat = stat
        self._before: dict[str, int] | None = None
        self.share: float | None = None
        self.seconds: float | None = None

    def __enter__(self) -> Stolen:
        self._before = cpu_ticks(self._stat)
        return self

    def __exit__(self, *exc: object) -> None:
        after = cpu_ticks(self._stat)
        if self._before is None or after is None:
            return
        spent = {kind: after[kind] - self._before[kind] for kind in _FIELDS}
        total = sum(spent.values())
        if total > 0:
            self.share = spent["steal"] / total
            self.seconds = spent["steal"] / os.sysconf("SC_CLK_TCK")
