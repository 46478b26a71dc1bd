"""constraints.txt pins every dependency, and the venv the tests run in was installed from it.

A dependency added to pyproject.toml without `make lock`, or a venv that drifted from the lock,
fails here rather than on a server that installs something CI never ran.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {canonical(m[1]): m[2] for line in lines if (m := PIN.match(line))}


def test_every_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    locked = pins()
    missing = []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonical(requirement.name)
        if name not in locked:
            missing.append(name)
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            missing.append(f"{name}=={locked[name]} outside {requirement.specifier}")
    assert not missing, f"run `make lock`: constraints.txt lacks {missing}"


def test_the_venv_matches_the_lock() -> None:
    drifted = {}
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a package for another platform or Python (markers)
        if installed != version:
            drifted[name] = (installed, version)
    assert not drifted, f"installed ≠ constraints.txt (make install): {drifted}"
