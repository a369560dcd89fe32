"""Plain (identity) and gzip clients in any mix cost at most one extra copy of the exposition.

Per-number text is kept only deflated after the first gzip response; a plain response inflates
it a slice at a time while it is sent. The fast tests check the streaming itself; the slow one
holds eight plain and four gzip responses open at once against a real exporter process and
reads its peak RSS (VmHWM) before and after.
"""

from __future__ import annotations

import gzip
import http.client
import random
from pathlib import Path

import pytest

from exporter.metrics.encoding import SampleText, gzip_body, plain_body, plain_size
from exporter.simulator import Simulator
from tests.support.exporters import exporter_process

SUB = "acme-big"
KEY = "plain-memory-key"


def varied_text(lines: int) -> bytes:
    rng = random.Random(7)
    return b"".join(
        b'eightbyeight_number_info{msisdn="+65%08d",status="%s"} 1.0\n'
        % (rng.randrange(10**8), rng.choice([b"Active", b"Inactive", b"Expiring"]))
        for _ in range(lines)
    )


def test_text_kept_only_deflated_is_inflated_a_slice_at_a_time():
    text = varied_text(60_000)  # ~3.5 MB, deflated to several input slices
    parts = [b"# head\n", SampleText([text]), b"# tail\n"]
    gzip.decompress(b"".join(gzip_body(parts)))  # the text is now kept only deflated
    slices = list(plain_body(parts))
    assert b"".join(slices) == b"# head\n" + text + b"# tail\n"
    assert plain_size(parts) == len(text) + 14
    assert max(map(len, slices)) <= 1 << 18  # never the whole text in one piece


def test_the_plain_size_is_known_before_and_after_deflating():
    part = SampleText([b"a 1\n", b"b 2\n"])
    assert plain_size([b"x\n", part]) == 10
    gzip_body([part])
    assert plain_size([b"x\n", part]) == 10
    assert b"".join(plain_body([b"x\n", part])) == b"x\na 1\nb 2\n"


def info_lines(text: bytes) -> list[bytes]:
    """The per-number lines that do not change between scrapes."""
    return [line for line in text.split(b"\n") if line.startswith(b"eightbyeight_number_info{")]


def vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def open_response(port: int, encoding: str) -> tuple[http.client.HTTPConnection, object]:
    """A /metrics response whose headers are read and whose body is not (yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": encoding})
    return conn, conn.getresponse()


@pytest.mark.slow
def test_plain_and_gzip_clients_at_once_cost_at_most_one_copy_of_the_text(tmp_path):
    with Simulator({SUB: 50_000}, KEY, seed=5, clock=lambda: 1_700_000_000.0) as sim:
        argv = ["--api.base-url", sim.base_url, "--subaccount", SUB, "--cache.ttl", "1h"]
        # The twelve answers below are all under way at once: a worker each (--web.workers).
        argv += ["--web.workers", "12"]
        # What is measured is memory, not speed: the first scrape (the simulator makes its
        # 25 MB body, the exporter reads it) may take a busy machine well past the default 10 s.
        argv += ["--api.timeout", "120s"]
        env = {"EIGHTBYEIGHT_API_KEY": KEY}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, pid):
            port = int(url.rsplit(":", 1)[1])
            conn, first = open_response(port, "gzip")
            text = gzip.decompress(first.read())
            conn.close()
            before = vm_hwm_bytes(pid)
            # Every response has its headers before any body is read: the old code had
            # inflated a whole copy for each plain one by then.
            opened = [open_response(port, "identity") for _ in range(8)]
            opened += [open_response(port, "gzip") for _ in range(4)]
            bodies = []
            for conn, response in opened:
                bodies.append((response.getheader("Content-Encoding"), response.read()))
                conn.close()
            grown = vm_hwm_bytes(pid) - before
    assert len(text) > 20e6
    numbers = info_lines(text)
    assert len(numbers) == 50_000
    for encoding, body in bodies:
        assert info_lines(gzip.decompress(body) if encoding == "gzip" else body) == numbers
    assert grown <= len(text), (
        f"peak RSS grew by {grown / 1e6:.0f} MB, text {len(text) / 1e6:.0f} MB"
    )
