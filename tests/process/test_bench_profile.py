"""`python -m bench`'s profile table: py-spy's samples folded into areas by their innermost frame
that belongs to one, so that the table says where the exporter's CPU went."""

from __future__ import annotations

from bench import cost

ROOT = "/srv/exporter/"
SITE = "/srv/venv/lib/python3.11/site-packages/"
STDLIB = "/usr/lib/python3.11/"
THREAD = f"_bootstrap ({STDLIB}threading.py:995);run ({STDLIB}threading.py:982)"
POOL = f"{THREAD};_work ({ROOT}exporter/polling/scraper.py:564)"
FETCH = f"{POOL};_run ({ROOT}exporter/polling/scraper.py:587);_fetch ({ROOT}exporter/polling/scraper.py:330)"


def test_samples_go_to_the_area_of_their_innermost_known_frame(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "\n".join(
            [
                f"{FETCH};render_inventory ({ROOT}exporter/polling/exposition.py:240) 5",
                f"{FETCH};parse_inventory ({ROOT}exporter/polling/model.py:210) 3",
                # the scraper's own lines are its bookkeeping, not the thread's
                f"{FETCH} 4",
                # the API client, in whatever it calls, is the HTTP client
                f"{FETCH};_fetch ({ROOT}exporter/polling/client.py:247) 2",
                f"{FETCH};_fetch ({ROOT}exporter/polling/client.py:247);"
                f"send ({SITE}requests/adapters.py:696) 1",
                # a lock taken inside the client is a wait
                f"{FETCH};_fetch ({ROOT}exporter/polling/client.py:247);"
                f"notify ({STDLIB}threading.py:382) 1",
                f"{THREAD};handle ({ROOT}exporter/web/server.py:120) 2",
                f"{THREAD} 1",
                "<module> (<string>:1) 1",
            ]
        )
        + "\n"
    )
    shares = dict(cost.profile_shares(raw))
    total = 20
    assert shares == {
        "rendering (exposition, selfmetrics)": 5 / total,
        "scrape bookkeeping (scraper)": 4 / total,
        "parsing (model)": 3 / total,
        "HTTP client (its API client, requests, urllib3, http.client, ssl, socket)": 3 / total,
        "threads and waits": 2 / total,
        "HTTP server (exporter/web, wsgiref)": 2 / total,
        "other": 1 / total,
    }
