#!/usr/bin/env python3
"""The lowest versions pyproject.toml allows, as a pip constraints file; or a check of a venv.

    scripts/lowest-constraints.py            print NAME==LOWER for every direct dependency
    scripts/lowest-constraints.py --check    in the venv of the running python: fail unless
                                             each of them is installed at exactly that version

The direct dependencies are [project] dependencies and the `sandbox` extra (what a user's
`pip install 'driftwarden[sandbox]'` resolves); each must have a `>=` lower bound, which is what
`make test-lowest` installs (`pip install --constraint`) and tests. The test tools of the `dev`
extra are not constrained: their versions do not change what the package needs.
Standard library only: it runs with any python3, before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
EXTRAS = ("sandbox",)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lowest() -> dict[str, str]:
    """{canonical name: lower bound} for every direct dependency; exits on one without `>=`."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [*project["dependencies"], *(r for e in EXTRAS for r in project["optional-dependencies"][e])]
    bounds: dict[str, str] = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)", requirement)
        assert match, requirement
        name, specifiers = canonical(match.group(1)), match.group(2).split(";")[0]
        lower = re.search(r">=\s*([0-9][0-9A-Za-z.+!-]*)", specifiers)
        if not lower:
            sys.exit(f"lowest-constraints: {requirement!r} in pyproject.toml has no '>=' lower bound")
        bounds[name] = lower.group(1)
    return bounds


def main(argv: list[str]) -> int:
    bounds = lowest()
    if argv == ["--check"]:
        wrong = []
        for name, version in sorted(bounds.items()):
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = "(not installed)"
            # "3.10" allows "3.10.0": compare release numbers padded with zeros.
            pad = lambda v: tuple(int(p) for p in re.findall(r"\d+", v)) + (0,) * 4  # noqa: E731
            if installed == "(not installed)" or pad(installed)[:4] != pad(version)[:4]:
                wrong.append(f"{name} {installed} (lowest allowed: {version})")
        if wrong:
            print("lowest-constraints: not the lowest versions:", *wrong, sep="\n  ", file=sys.stderr)
            return 1
        print("lowest versions installed:", " ".join(f"{n}=={v}" for n, v in sorted(bounds.items())))
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("# The lower bounds of pyproject.toml (scripts/lowest-constraints.py): make test-lowest")
    for name, version in sorted(bounds.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
