"""One load-generating process for tests/process/test_load.py: THREADS scrapers, back to back.

    python tests/process/load_worker.py URL SECONDS THREADS SUBACCOUNT

Once imported it prints "ready" and reads the wall-clock time START_AT from stdin; every thread
waits for START_AT, then scrapes URL/metrics until SECONDS have passed. Prints one JSON object:
scrapes that succeeded (HTTP 200 and eightbyeight_up 1 for SUBACCOUNT), the first few failures,
and every successful scrape's latency. The load runs in processes of its own so that the
generator's GIL is not the thing being measured.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import requests


def run(url: str, seconds: float, threads: int, start_at: float, subaccount: str) -> dict:
    up_line = f'eightbyeight_up{{subaccount="{subaccount}"}} 1.0'.encode()
    lock = threading.Lock()
    result: dict = {"ok": 0, "failed": 0, "failures": [], "latencies": []}

    def scrape_loop() -> None:
        session = requests.Session()
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10", "Accept-Encoding": "gzip"}
        time.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                answer = session.get(url + "/metrics", headers=headers, timeout=15)
                problem = None
                if answer.status_code != 200 or up_line not in answer.content:
                    problem = f"HTTP {answer.status_code}: {answer.content[:200]!r}"
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - began
            with lock:
                if problem is None:
                    result["ok"] += 1
                    result["latencies"].append(round(elapsed, 4))
                else:
                    result["failed"] += 1
                    if len(result["failures"]) < 20:
                        result["failures"].append(problem)

    workers = [threading.Thread(target=scrape_loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return result


if __name__ == "__main__":
    url, seconds, threads, subaccount = sys.argv[1:5]
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    print(json.dumps(run(url, float(seconds), int(threads), start_at, subaccount)))
