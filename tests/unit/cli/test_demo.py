"""`--demo`: the exporter on its embedded default, the simulator, with nothing configured."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.exporters import exporter_process
from tests.support.processes import wait_until

# Starts the exporter as a real process.
pytestmark = pytest.mark.slow


def test_demo_mode_serves_simulated_subaccounts_and_says_where(tmp_path):
    log = tmp_path / "demo.log"
    with exporter_process(["--demo"], {}, log) as (url, _):
        text = requests.get(f"{url}/metrics", timeout=10).text
        wait_until(lambda: "demo mode" in log.read_text(), timeout=10, what="demo log line")
    values = {
        (s.name, s.labels.get("subaccount")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for sub in ("demo-apac", "demo-emea"):
        assert values[("eightbyeight_up", sub)] == 1
        assert values[("eightbyeight_virtual_numbers", sub)] > 0
    names = {name for name, _ in values}
    assert "eightbyeight_number_info" in names
    line = next(line for line in log.read_text().splitlines() if "demo mode" in line)
    assert f"{url}/metrics" in line
    assert "simulator=http://127.0.0.1:" in line  # the simulator is on loopback, never 8x8
    assert "8x8.com" not in log.read_text()
