"""Print the lowest declared version of each runtime dependency as a pip constraint.

    python3 .ci/lowest_requirements.py [pyproject.toml] > lowest.txt

Reads [project].dependencies and turns each requirement's `>=X` into `==X` (a marker such as
`; python_version < "3.12"` is kept). A runtime dependency without a `>=` lower bound is an
error: every declared range must have a lowest version that CI installs and tests.
"""

from __future__ import annotations

import re
import sys
import tomllib

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def lowest_pin(requirement: str) -> str:
    """`name==lowest` (plus the requirement's marker, if any) for one PEP 508 requirement."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot parse the requirement {requirement!r}")
    name, _extras, specifiers, marker = match.groups()
    lower = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(lower) != 1:
        raise ValueError(f"runtime dependency {requirement!r} needs exactly one '>=' lower bound")
    return f"{name}=={lower[0]}" + (f" {marker}" if marker else "")


def main(path: str = "pyproject.toml") -> int:
    with open(path, "rb") as file:
        dependencies = tomllib.load(file)["project"].get("dependencies", [])
    try:
        pins = [lowest_pin(requirement) for requirement in dependencies]
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
