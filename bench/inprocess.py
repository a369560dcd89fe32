"""In-process measurements for one body, run in a fresh interpreter so sizes and heaps never mix.

    python -m bench.inprocess BODY_FILE --subaccount bench --repeat 7 --naive-repeat 3

prints one JSON object: the floor (`json.loads` of the body, already in memory), the exporter's
work per scrape (parse_inventory + render_inventory + render_scrapes + plain_body, as web.py calls it for a
client that accepts gzip), the same with per-number series off, and the naive peer. Each figure
is the best of `repeat` runs; runs of the floor and of the exporter alternate so that a busy
neighbour slows both alike. CPU seconds (all threads) are recorded next to wall seconds.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.naive import naive_exposition
from exporter.metrics.encoding import gzip_body, plain_body
from exporter.polling.exposition import SubaccountScrape, render_inventory, render_scrapes
from exporter.polling.model import parse_inventory


def _clock(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    gc.collect()  # every run starts from the same heap, for the floor and the exporter alike
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def exporter_scrape(body: bytes, subaccount: str, per_number: bool) -> dict[str, Any]:
    """One scrape's work, timed by stage.

    work = parse + render + targets (the plain exposition), as the issue defines it; then the
    first gzip response (which deflates the rendered text once per API response) and a second
    one (what each scrape served from the cache costs).
    """
    t0 = time.perf_counter()
    inventory = parse_inventory(body, per_number)
    t1 = time.perf_counter()
    rendered = render_inventory(inventory, subaccount, per_number)
    t2 = time.perf_counter()
    now = time.time()
    sample = SubaccountScrape(subaccount, True, t2 - t0, rendered, now)
    plain = list(plain_body(render_scrapes([sample], now)))
    t3 = time.perf_counter()
    gzip_body(render_scrapes([sample], now))
    t4 = time.perf_counter()
    gzipped = gzip_body(render_scrapes([sample], now))
    t5 = time.perf_counter()
    return {
        "work": t3 - t0,
        "parse": t1 - t0,
        "render": t2 - t1,
        "targets": t3 - t2,
        "gzip_first": t4 - t3,
        "gzip_again": t5 - t4,
        "plain": plain,
        "gzip": gzipped,
    }


def _summary(walls: list[float], cpus: list[float]) -> dict[str, float]:
    return {"best": min(walls), "median": statistics.median(walls), "cpu_best": min(cpus)}


def measure(body: bytes, subaccount: str, repeat: int, naive_repeat: int) -> dict[str, Any]:
    floor_w, floor_c = [], []
    runs: dict[bool, list[tuple[float, dict[str, Any]]]] = {True: [], False: []}
    for _ in range(repeat):
        wall, cpu, _doc = _clock(lambda: json.loads(body))
        floor_w.append(wall)
        floor_c.append(cpu)
        for per_number in (True, False):
            cpu_before = time.process_time()
            _, _, stages = _clock(partial(exporter_scrape, body, subaccount, per_number))
            runs[per_number].append((time.process_time() - cpu_before, stages))

    out: dict[str, Any] = {"body_bytes": len(body), "floor": _summary(floor_w, floor_c)}
    for per_number, key in ((True, "exporter"), (False, "exporter_aggregates_only")):
        walls = [stages["work"] for _, stages in runs[per_number]]
        best = min(runs[per_number], key=lambda run: run[1]["work"])[1]
        plain = b"".join(best["plain"])
        gz = b"".join(best["gzip"])
        if gzip.decompress(gz) != plain:
            raise SystemExit("gzip response differs from the plain exposition")
        out[key] = {
            "best": min(walls),
            "median": statistics.median(walls),
            **{
                stage: min(stages[stage] for _, stages in runs[per_number])
                for stage in ("parse", "render", "targets", "gzip_first", "gzip_again")
            },
            "exposition_bytes": len(plain),
            "exposition_gzip_bytes": len(gz),
            "series": sum(1 for line in plain.splitlines() if not line.startswith(b"#")),
        }

    naive_w, naive_c, text = [], [], b""
    for _ in range(naive_repeat):
        wall, cpu, text = _clock(lambda: naive_exposition(body, subaccount, time.time()))
        naive_w.append(wall)
        naive_c.append(cpu)
    if naive_w:
        out["naive"] = {**_summary(naive_w, naive_c), "exposition_bytes": len(text)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("body", type=Path)
    parser.add_argument("--subaccount", default="bench")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--naive-repeat", type=int, default=3)
    args = parser.parse_args(argv)
    body = args.body.read_bytes()
    result = measure(body, args.subaccount, args.repeat, args.naive_repeat)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
