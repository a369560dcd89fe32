"""requirements.lock pins every runtime dependency the project declares, within its range."""

import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.processes import REPO


def lock_pins():
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
        assert match, f"not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_every_declared_dependency_is_pinned_within_its_range():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = lock_pins()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} not {text}"


def test_image_installs_the_locked_versions():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--constraint requirements.lock" in dockerfile
    assert "!requirements.lock" in (REPO / ".dockerignore").read_text()


def test_lock_matches_what_is_installed():
    """A stale lock would make the image install other versions than the tests ran on."""
    fresh = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "lock")], capture_output=True, text=True, check=True
    ).stdout
    assert fresh == (REPO / "requirements.lock").read_text(), (
        "requirements.lock is stale: regenerate with '.venv/bin/python .ci/lock > requirements.lock'"
    )
