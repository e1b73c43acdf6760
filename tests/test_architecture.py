"""Layering rules, checked on the source's AST.

The codec and the server core are sans-I/O: they never touch sockets, the event loop, the
database or the terminal UI; the codec depends only on the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "salon"
SANS_IO_PACKAGES = ("proto", "server", "client")
FORBIDDEN = {"asyncio", "sqlite3", "socket", "selectors", "ssl", "textual"}
PROTO_ALLOWED_LOCAL = ("salon.proto", "salon.errors")


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def module_name(path: Path, root: Path = SRC) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """Every module an import statement names, anywhere in the file (functions and
    TYPE_CHECKING blocks included), relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from salon import x`` may name a submodule: check those too.
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_packages_exist() -> None:
    assert modules("proto"), SRC / "proto"
    assert modules("server"), SRC / "server"


@pytest.mark.parametrize("package", SANS_IO_PACKAGES)
def test_sans_io_packages_import_no_io(package: str) -> None:
    bad = [
        f"{path.relative_to(SRC.parent)}:{line}: {name}"
        for path in modules(package)
        for line, name in imported_modules(path)
        if top(name) in FORBIDDEN
    ]
    assert bad == []


def test_proto_imports_only_stdlib_and_itself() -> None:
    bad = []
    for path in modules("proto"):
        for line, name in imported_modules(path):
            root = top(name)
            if root == "__future__" or root in sys.stdlib_module_names:
                continue
            if root == "salon" and (
                name in ("salon", *PROTO_ALLOWED_LOCAL)
                or name.startswith(tuple(p + "." for p in PROTO_ALLOWED_LOCAL))
            ):
                continue
            bad.append(f"{path.relative_to(SRC.parent)}:{line}: {name}")
    assert bad == []


def test_the_scanner_sees_forbidden_imports(tmp_path: Path) -> None:
    """The scan itself: every spelling of an import is caught."""
    sample = tmp_path / "salon" / "proto" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "import asyncio\n"
        "import os, socket as s\n"
        "from ssl import SSLContext\n"
        "from selectors import DefaultSelector\n"
        "def f():\n"
        "    import sqlite3\n"
        "    from textual.app import App\n"
        "from . import message\n"
        "from ..errors import SalonError\n"
    )
    names = {name for _, name in imported_modules(sample, tmp_path / "salon")}
    assert {top(n) for n in names} >= FORBIDDEN | {"os", "salon"}
    assert "salon.proto.message" in names
    assert "salon.errors" in names
