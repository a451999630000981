"""requirements.lock must agree with pyproject.toml, or setup.sh installs the wrong packages.

setup.sh installs every Python package from requirements.lock with ``--require-hashes`` (pins
and hashes, so a swapped or newly published file cannot get in) and the project with
``--no-deps``: a dependency added to pyproject.toml without regenerating the lock
(``bash scripts/lock.sh``) would go missing silently. These checks catch that without network.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
SETUP = ROOT / "scripts" / "setup.sh"
REGENERATE = "run `bash scripts/lock.sh` and commit requirements.lock"

_DIGEST = re.compile(r"^# pyproject-sha256: ([0-9a-f]{64})$", re.MULTILINE)
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


@dataclass(frozen=True)
class Pin:
    """One requirement of the lock: ``name==version`` and the hashes pip accepts for it."""

    line: str
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> Version | None:
        """The pinned version, or None when the specifier is not one exact ``==``."""
        specs = list(self.requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            return None
        return Version(specs[0].version)


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _direct_requirements(pyproject: dict[str, Any]) -> list[str]:
    """``[project].dependencies`` and the ``test`` extra: what setup.sh has to provide."""
    project = pyproject["project"]
    return [*project.get("dependencies", []),
            *project.get("optional-dependencies", {}).get("test", [])]


def pyproject_digest(pyproject: dict[str, Any]) -> str:
    """The digest scripts/lock.sh records: whitespace collapsed, sorted, joined by newlines."""
    reqs = sorted(" ".join(r.split()) for r in _direct_requirements(pyproject))
    return hashlib.sha256("\n".join(reqs).encode()).hexdigest()


def _logical_lines(text: str) -> list[str]:
    """The lock's requirement lines: continuations joined, comments and options dropped."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if not current.startswith("-"):
            out.append(" ".join(current.split()))
        current = ""
    if current:
        out.append(" ".join(current.split()))
    return out


def _pins() -> dict[NormalizedName, Pin]:
    pins: dict[NormalizedName, Pin] = {}
    for line in _logical_lines(LOCK.read_text()):
        spec = line.split(" --hash=", 1)[0]
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name not in pins, f"{name} is listed twice in requirements.lock"
        pins[name] = Pin(line, req, tuple(_HASH.findall(line)))
    return pins


def test_lock_parses_to_packages() -> None:
    pins = _pins()
    # A parser that silently found nothing would make every check below pass.
    assert len(pins) >= len(_direct_requirements(_pyproject()))


def test_lock_records_current_pyproject_digest() -> None:
    found = _DIGEST.findall(LOCK.read_text())
    assert len(found) == 1, (
        f"requirements.lock has no single '# pyproject-sha256:' line; {REGENERATE}")
    assert found[0] == pyproject_digest(_pyproject()), (
        f"pyproject.toml's dependencies changed since requirements.lock was made; {REGENERATE}")


def test_every_direct_and_build_requirement_is_pinned_within_its_specifier() -> None:
    pyproject = _pyproject()
    # The build requirements are locked too: setup.sh installs the project without isolation.
    wanted = [*_direct_requirements(pyproject), *pyproject["build-system"]["requires"]]
    pins = _pins()
    problems: list[str] = []
    for text in wanted:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
            continue
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif pin.version is None:
            problems.append(f"{req.name} is not pinned with == in requirements.lock: {pin.line}")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req.name}=={pin.version} does not satisfy {text!r}")
    assert not problems, "\n".join([*problems, REGENERATE])


def test_every_pin_is_exact_and_hashed() -> None:
    problems: list[str] = []
    for name, pin in _pins().items():
        if pin.version is None:
            problems.append(f"{name}: not pinned to one version with ==")
        if not pin.hashes:
            problems.append(f"{name}: no --hash=sha256: (pip --require-hashes would refuse it)")
    assert not problems, "\n".join(problems)


def test_setup_installs_only_from_the_lock_with_hashes() -> None:
    commands = [" ".join(line.split()) for line in SETUP.read_text().splitlines()
                if "pip install" in line and not line.lstrip().startswith("#")]
    assert any("--require-hashes" in c and "-r requirements.lock" in c for c in commands), commands
    for c in commands:
        # Anything else pip installs is hashed (a requirements file cut from the lock, with its
        # hashes) or must not reach an index: that would be an unhashed download.
        assert ("--require-hashes" in c and " -r " in c) or "--no-index" in c, c
