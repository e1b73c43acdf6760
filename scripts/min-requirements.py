"""Print the lowest allowed version of every runtime dependency, as pip requirements.

`make test-min` installs these pins in its own venv and runs the suite, so that the floors in
pyproject.toml's [project].dependencies are versions the code really works with
(docs/dependencies.md). Each `name>=X` becomes `name==X`; an environment marker is kept, so
pip skips a pin that does not apply to this machine (uvloop on Windows). A dependency without
a `>=` floor is an error: its lowest allowed version would be whatever is oldest on the index.

Usage: min-requirements.py [PYPROJECT]   (default: the repository's pyproject.toml)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# PEP 508: a name, optional [extras], then version specifiers, then an optional ; marker.
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")
FLOOR = re.compile(r">=\s*([^\s,]+)")


def pin(requirement: str) -> str:
    """`name[extras]>=X,<Y; marker` -> `name[extras]==X; marker`."""
    match = REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, extras, specifiers, marker = match.groups()
    floor = FLOOR.search(specifiers)
    if floor is None:
        raise ValueError(f"{requirement!r} has no '>=' floor")
    return f"{name}{extras or ''}=={floor.group(1)}{marker or ''}"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else PYPROJECT
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        pins = [pin(requirement) for requirement in project.get("dependencies", [])]
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as error:
        reason = "no [project] table" if isinstance(error, KeyError) else str(error)
        print(f"min-requirements: {path}: {reason}", file=sys.stderr)
        return 2
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
