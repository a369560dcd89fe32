"""Scenario files: the fault document of PUT /admin/faults written as YAML, loaded at start.

    global:
      latency_seconds: 0.2
    subaccounts:
      acme-prod:
        unhealthy: ["+6561234567"]
      acme-dev:
        status: 503
        retry_after: 30

A file holding only a fault set (`status: 503`) applies it to every subaccount; an empty
file means no faults.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.config.values import describe_yaml_error
from exporter.simulator.faults import FaultDocument, FaultError, parse_fault_document


class ScenarioError(ValueError):
    """A scenario file that cannot be read or is invalid; the message is one line."""


def load_scenario_file(path: Path) -> FaultDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError(f"scenario file {path}: cannot read: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(
            f"scenario file {path}: invalid YAML{describe_yaml_error(exc)}"
        ) from None
    try:
        return parse_fault_document(document, "scenario")
    except FaultError as exc:
        raise ScenarioError(f"scenario file {path}: {exc}") from None
