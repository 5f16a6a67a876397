"""requirements.lock, what `make venv` installs, still matches pyproject.toml (else: `make lock`)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)$")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"requirements.lock: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = _lock()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {req}: run `make lock`"
        )


def test_lock_is_the_cpu_install_with_a_working_scheduler():
    pins = _lock()
    cuda = sorted(n for n in pins if n.startswith("nvidia-") or n == "triton")
    assert not cuda, f"requirements.lock pulls CUDA packages {cuda}: compile it against torch's CPU build"
    assert pins["torch"].endswith("+cpu")
    major, minor = (int(x) for x in pins["sqlalchemy"].split(".")[:2])
    assert (major, minor) == (2, 0), "SQLAlchemy 2.1 breaks Prefect 3.8's scheduler service"


def test_this_environment_has_the_locked_versions_of_what_ghosts_needs():
    """The venv the suite runs in was installed from the lock (`make venv`), not resolved anew."""
    pins = _lock()
    off = {}
    for req in _declared():
        name = canonicalize_name(req.name)
        installed = metadata.version(req.name)
        locked = pins[name]
        if name == "torch":  # a CUDA build of the locked release is the documented GPU install
            installed, locked = installed.split("+")[0], locked.split("+")[0]
        if installed != locked:
            off[name] = (installed, locked)
    assert not off, f"installed != locked (installed, locked): {off}; run `make venv`"
