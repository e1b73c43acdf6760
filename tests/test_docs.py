"""The documentation cannot rot: docs/config.md carries the example config verbatim and lists
every config key with its real default, and no relative link in README.md or docs/*.md points
at a missing file."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from salon import config

REPO = Path(__file__).resolve().parent.parent
CONFIG_MD = REPO / "docs" / "config.md"
BEGIN = "<!-- example-config:begin -->"
END = "<!-- example-config:end -->"

# [text](target) and ![alt](target), with an optional "title"; a target in <...> too.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#+\s+`?(\[\[?[a-z_]+\]\]?)`?\s*$")
# | `key` | type | `default` | meaning |
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|[^|]*\|\s*([^|]*?)\s*\|")


def _sections() -> dict[str, type]:
    """Every config section: its TOML header -> its dataclass, read from salon.config.Config."""
    hints = typing.get_type_hints(config.Config, vars(config))
    sections: dict[str, type] = {}
    for f in dataclasses.fields(config.Config):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if type(None) in args:  # an optional section, like postgres: PostgresSection | None
            (hint,) = (a for a in args if a is not type(None))
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sections[f"[{f.name}]"] = hint
            continue
        args = typing.get_args(hint)
        if type(None) in args:  # an optional section, like cluster: ClusterSection | None
            (item,) = (a for a in args if a is not type(None))
            sections[f"[{f.name}]"] = item
            continue
        # A repeated section, like opers: tuple[OperBlock, ...] is the [[oper]] array.
        item, _ellipsis = args
        assert isinstance(item, type) and dataclasses.is_dataclass(item), f"Config.{f.name}"
        sections[f"[[{f.name.removesuffix('s')}]]"] = item
    return sections


def _documented_keys() -> dict[str, dict[str, str]]:
    """Section header -> {key: default column} of the tables under its heading."""
    keys: dict[str, dict[str, str]] = {}
    current: str | None = None
    in_code = False
    text = CONFIG_MD.read_text(encoding="utf-8").split(BEGIN, 1)[0]
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if heading := HEADING.match(line):
            current = heading.group(1)
            keys.setdefault(current, {})
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := ROW.match(line)):
            keys[current][row.group(1)] = row.group(2)
    return keys


def test_config_md_carries_the_example_verbatim() -> None:
    text = CONFIG_MD.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "one pair of example markers"
    inside = text.split(BEGIN, 1)[1].split(END, 1)[0]
    example = config.EXAMPLE_PATH.read_text(encoding="utf-8")
    assert inside == f"\n```toml\n{example}```\n", (
        "docs/config.md: the block between the example-config markers must be "
        "src/salon/salon.example.toml verbatim, in a ```toml fence"
    )


def test_sections_cover_config() -> None:
    sections = _sections()
    assert "[server]" in sections and "[[oper]]" in sections
    # Every section dataclass of salon.config is reachable from Config.
    section_classes = {
        obj
        for name, obj in vars(config).items()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and name != "Config"
    }
    assert section_classes == set(sections.values())


@pytest.mark.parametrize("section", sorted(_sections()))
def test_config_md_lists_every_key(section: str) -> None:
    documented = _documented_keys()
    assert section in documented, f"docs/config.md: no heading for {section}"
    keys = {f.name for f in dataclasses.fields(_sections()[section])}
    missing = sorted(keys - documented[section].keys())
    assert not missing, f"docs/config.md {section}: keys missing from the table: {missing}"
    unknown = sorted(documented[section].keys() - keys)
    assert not unknown, f"docs/config.md {section}: keys salon.config does not have: {unknown}"


@pytest.mark.parametrize("section", sorted(_sections()))
def test_config_md_defaults_are_the_real_ones(section: str) -> None:
    """The default column, read as TOML, is what salon.config uses with no config."""
    documented = _documented_keys()[section]
    for f in dataclasses.fields(_sections()[section]):
        cell = documented[f.name]
        if f.default is dataclasses.MISSING:
            assert cell == "(required)", f"{section} {f.name}: {cell}"
            continue
        assert cell.startswith("`") and cell.endswith("`"), f"{section} {f.name}: {cell}"
        value = tomllib.loads(f"v = {cell[1:-1]}")["v"]
        if isinstance(f.default, tuple):  # CIDR lists and the channel_retention table
            value = tuple(value.items() if isinstance(value, dict) else value)
            expected: object = tuple(str(net) for net in f.default)
        else:
            expected = f.default
        assert value == expected, f"docs/config.md {section}.{f.name}: {cell}, really {expected!r}"


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    # Links inside code blocks and inline code are examples, not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto:... and anchors within the page
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to missing files: {broken}"


MIN_REQUIREMENTS = REPO / "scripts" / "min-requirements.py"
DEPENDENCIES_MD = REPO / "docs" / "dependencies.md"
# | `name` ... | floor | ...: a row of the runtime floors table.
FLOOR_ROW = re.compile(r"^\|\s*`([A-Za-z0-9._-]+)`[^|]*\|\s*([0-9][^|\s]*)\s*\|")


def _min_requirements(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MIN_REQUIREMENTS), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_dependencies_md_gives_every_floor() -> None:
    """docs/dependencies.md explains each runtime floor, at the version pyproject.toml has:
    the pins `make test-min` installs."""
    done = _min_requirements()
    assert done.returncode == 0, done.stderr
    pins = {}
    for line in done.stdout.splitlines():
        name, version = line.split(";", 1)[0].split("==")
        pins[name] = version
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert len(pins) == len(declared["project"]["dependencies"])
    documented = {}
    for line in DEPENDENCIES_MD.read_text(encoding="utf-8").splitlines():
        if row := FLOOR_ROW.match(line):
            documented[row.group(1)] = row.group(2)
    assert documented == pins, "docs/dependencies.md: the floors table must match pyproject.toml"


# | `extra` | `dependency` | floor | ...: a row of the optional extras table.
EXTRA_ROW = re.compile(r"^\|\s*`([a-z0-9-]+)`\s*\|\s*`([^`]+)`\s*\|\s*([0-9][^|\s]*)\s*\|")
# Extras of tools, not of salon's features: described in prose.
TOOL_EXTRAS = {"test", "bench"}


def test_dependencies_md_gives_every_optional_floor() -> None:
    """Each feature extra's requirement is in docs/dependencies.md's optional extras table
    with its floor, and the test extra holds it too (the tests of that feature need it)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    declared = {
        (extra, *requirement.split(">=", 1))
        for extra, requirements in extras.items()
        if extra not in TOOL_EXTRAS
        for requirement in requirements
    }
    documented = set()
    for line in DEPENDENCIES_MD.read_text(encoding="utf-8").splitlines():
        if row := EXTRA_ROW.match(line):
            documented.add(row.groups())
    assert declared, "no feature extra in pyproject.toml"
    assert documented == declared, "docs/dependencies.md: the extras table must match"
    for _, name, floor in declared:
        assert f"{name}>={floor}" in extras["test"]


def test_min_requirements_pins_floors_and_keeps_markers(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["a>=1.2,<2", "b[x] >= 3 ; sys_platform != \'win32\'"]\n'
    )
    done = _min_requirements(str(pyproject))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["a==1.2", "b[x]==3; sys_platform != 'win32'"]


def test_min_requirements_refuses_a_dependency_without_floor(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["a>=1", "b<2"]\n')
    done = _min_requirements(str(pyproject))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"min-requirements: {pyproject}: 'b<2' has no '>=' floor\n"
