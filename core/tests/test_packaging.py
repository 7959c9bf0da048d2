"""Installs are reproducible: every dependency is pinned, with hashes."""

import re
import tomllib
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) in a pip-compile lock file."""
    found = {}
    text = (BASE_DIR / lock).read_text()
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            found[name] = (match.group(2), block.count("--hash=sha256:"))
    return found


def wanted(requirements) -> set[str]:
    names = set()
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names


PROJECT = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]


def test_every_runtime_dependency_is_pinned_with_hashes():
    locked = pins("requirements.lock")
    for name in wanted(PROJECT["dependencies"]):
        assert name in locked, f"{name} is not in requirements.lock: run make lock"
        assert locked[name][1] >= 1, f"{name} has no hash"
    assert all(count for _version, count in locked.values())


def test_every_dev_dependency_is_pinned_with_hashes_and_agrees_with_runtime():
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    for name in wanted(
        PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]
    ):
        assert name in dev, f"{name} is not in requirements-dev.lock: run make lock"
    for name, (version, _hashes) in runtime.items():
        assert dev[name][0] == version, f"{name}: {version} vs {dev[name][0]}"


def test_make_install_and_the_locks_name_no_machine_of_ours():
    makefile = (BASE_DIR / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (BASE_DIR / lock).read_text()
        assert "--index-url" not in text and "--find-links" not in text
        assert "file://" not in text
