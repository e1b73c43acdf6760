"""Layering rules, checked on the source's AST.

The codec and the server core are sans-I/O: they never touch sockets, the event loop, the
database or the terminal UI; the codec depends only on the standard library. Imports point
one way: no module of salon imports itself back, through however many others.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "salon"
SANS_IO_PACKAGES = ("proto", "server", "client")
FORBIDDEN = {
    "asyncio", "sqlite3", "socket", "selectors", "ssl", "textual",
    # The engines of the scale-out: only salon.net.bus (Redis) and salon.store.postgres.
    "redis", "psycopg",
}  # fmt: skip
PROTO_ALLOWED_LOCAL = ("salon.proto", "salon.errors")


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def module_name(path: Path, root: Path = SRC) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# Where an import statement runs. MODULE: when the module is first imported (class bodies
# and try blocks included). FUNCTION: when the function runs; such a cycle only waits for
# its first call. TYPE_CHECKING: never at run time, only for mypy.
MODULE, FUNCTION, TYPE_ONLY = "module", "function", "type-checking"


@dataclass(frozen=True)
class Import:
    """One import statement. ``names`` are what ``from m import a, b`` takes, as ``m.a`` and
    ``m.b``: each a submodule or an attribute of ``m``; empty for ``import m``."""

    line: int
    module: str
    names: tuple[str, ...]
    where: str


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, root: Path = SRC) -> list[Import]:
    """Every import statement in the file, with where it runs, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = TYPE_ONLY if where == TYPE_ONLY else FUNCTION
            elif isinstance(child, ast.If) and _type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, TYPE_ONLY)
                for stmt in child.orelse:
                    visit_one(stmt, where)
                continue
            visit_one(child, inner)

    def visit_one(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name, (), where) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            names = tuple(f"{name}.{alias.name}" for alias in node.names)
            found.append(Import(node.lineno, name, names, where))
        visit(node, where)

    visit(tree, MODULE)
    return found


def imported_modules(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """Every module an import statement names, anywhere in the file (functions and
    TYPE_CHECKING blocks included), relative imports resolved. ``from salon import x`` may
    name a submodule: ``salon.x`` is listed too."""
    return [(imp.line, name) for imp in imports(path, root) for name in (imp.module, *imp.names)]


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
        "import redis.asyncio as aioredis\n"
        "from psycopg import sql\n"
    )
    names = {name for _, name in imported_modules(sample, tmp_path / "salon")}
    assert {top(n) for n in names} >= FORBIDDEN | {"os", "salon"}
    assert "salon.proto.message" in names
    assert "salon.errors" in names


# --- Import cycles -------------------------------------------------------------------------
#
# Imports point one way (issue 18). A cycle counts every import that runs: at the top of a
# module, and inside a function too, since a cycle through a function only waits for its
# first call. Imports under ``if TYPE_CHECKING:`` never run: they are for annotations, and
# make no cycle (handlers name ``Server`` that way).
#
# Importing ``salon.a.b`` runs ``salon/a/__init__.py`` first: that is an edge to ``salon.a``
# too, except from inside ``salon.a``, whose package Python has always begun to import
# already; ``from salon.a import name`` inside it is an edge to ``salon.a`` only when
# ``name`` is no submodule.

_CHAT_ONLY = "only `salon chat` needs the client, its settings and the terminal UI (textual)"
_ACCOUNT_ONLY = "only `salon account` needs the store and the server's account rules"
_SERVE_ONLY = "only `salon serve` needs the shell (asyncio, uvloop, the storage threads)"
_TLS_CHECK = "only `salon check-config` of a config with a certificate loads it"
_HASH_ONLY = "only `salon hash-password` needs argon2"
_FILES_ONLY = "only `salon files` needs the file host's blobs and the store"
_REDIS = "only a [cluster] config loads the bus and redis (off means off: test_loopback.py)"
_WORKERS = "only `salon serve --workers` (and its workers, and `cluster status` of one) need the supervisor"
_PSYCOPG = "only `salon db import` and a server with [postgres] load psycopg (off means off: tests/store/test_postgres.py)"

# Imports inside functions kept on purpose, so that a command loads only what it uses
# (`cli` imports `admin` and `tui.cli` for their parsers). They are edges like any other:
# listing one here hides no cycle.
_FILES_ONLY = "only `salon files` needs the store and the blobs"
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("salon.cli", "salon.net.runner"): _SERVE_ONLY,
    ("salon.cli", "salon.net.tls"): _TLS_CHECK,
    ("salon.cli", "salon.passwords"): _HASH_ONLY,
    ("salon.cli", "salon.store.pgimport"): _PSYCOPG,
    ("salon.net.runner", "salon.net.bus"): _REDIS,
    ("salon.cli", "salon.net.bus"): _REDIS,
    ("salon.cli", "salon.workers"): _WORKERS,
    ("salon.cli", "salon.store.postgres"): _PSYCOPG,
    ("salon.net.runner", "salon.store.postgres"): _PSYCOPG,
    ("salon.tui.cli", "salon.client"): _CHAT_ONLY,
    ("salon.tui.cli", "salon.client.commands"): _CHAT_ONLY,
    ("salon.tui.cli", "salon.tui.config"): _CHAT_ONLY,
    ("salon.tui.cli", "salon.tui.connection"): _CHAT_ONLY,
    ("salon.tui.cli", "salon.tui.app"): _CHAT_ONLY,
    ("salon.tui.cli", "salon.tui.plain"): _CHAT_ONLY,
    ("salon.admin", "salon.datadir"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.proto.casemap"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.server.accounts"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.server.nicks"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.server.services"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.store.base"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.store.sqlite"): _ACCOUNT_ONLY,
    ("salon.admin", "salon.server.fileserv"): _ACCOUNT_ONLY,
    ("salon.filesadmin", "salon.datadir"): _FILES_ONLY,
    ("salon.filesadmin", "salon.net.filehost"): _FILES_ONLY,
    ("salon.filesadmin", "salon.store.sqlite"): _FILES_ONLY,
}


@dataclass(frozen=True)
class Edge:
    """``importer`` runs ``imported`` (``named``: the import statement names it; else it is
    the package of one it names)."""

    importer: str
    imported: str
    path: Path
    line: int
    where: str
    named: bool

    def __str__(self) -> str:
        place = "" if self.where == MODULE else f", in a {self.where}"
        return f"{self.importer} -> {self.imported} ({self.path}:{self.line}{place})"


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module that defines ``name``: itself, or the longest prefix that is a module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in known:
            return prefix
    return None


def _packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def import_edges(root: Path = SRC) -> list[Edge]:
    """Every import of one module of ``root`` by another that runs (not TYPE_CHECKING)."""
    known = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    edges = []
    for importer, path in known.items():
        mine = set(_packages(importer))
        for imp in imports(path, root):
            if imp.where == TYPE_ONLY:
                continue
            owners = {_owner(name, known) for name in imp.names or (imp.module,)}
            for target in sorted(o for o in owners if o is not None):
                for name in (target, *_packages(target)):
                    named = name == target
                    if name == importer or name not in known or (name in mine and not named):
                        continue
                    rel = path.relative_to(root.parent)
                    edges.append(Edge(importer, name, rel, imp.line, imp.where, named))
    return edges


def strongly_connected(edges: list[Edge]) -> list[list[str]]:
    """Tarjan's algorithm: the sets of modules that import each other, directly or not
    (each a list of two or more, sorted)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(cycle: list[str], edges: list[Edge]) -> str:
    inside = [str(e) for e in edges if e.importer in cycle and e.imported in cycle]
    return "cycle among " + ", ".join(cycle) + ":\n    " + "\n    ".join(inside)


def test_imports_make_no_cycle() -> None:
    edges = import_edges()
    bad = [describe(cycle, edges) for cycle in strongly_connected(edges)]
    assert not bad, "\n".join(bad)


# Handlers are reached through the command table only: domain modules (accounts, services,
# channels, nicks, the plain-text port, core) never import them, and handlers import none of
# each other; what two of them share is a domain operation (issue 18 point 1).
HANDLER_IMPORTERS = "salon.server.commands"


def handler_imports(root: Path = SRC) -> set[tuple[str, str]]:
    """Who imports a handler module, or the handlers package, at run time."""
    return {
        (e.importer, e.imported)
        for e in import_edges(root)
        if e.named
        and e.importer != HANDLER_IMPORTERS
        and (
            e.imported == "salon.server.handlers" or e.imported.startswith("salon.server.handlers.")
        )
    }


def test_only_the_command_table_imports_handlers() -> None:
    assert sorted(handler_imports()) == [], "import a domain module instead"


def test_the_handler_import_check_sees_a_domain_module_importing_a_handler(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "salon" / "server" / "handlers"
    pkg.mkdir(parents=True)
    files = {
        "salon/__init__.py": "",
        "salon/server/__init__.py": "",
        "salon/server/handlers/__init__.py": "",
        "salon/server/handlers/a.py": "from salon.server import domain\n",
        "salon/server/handlers/b.py": "def f():\n    from salon.server.handlers.a import x\n",
        "salon/server/commands.py": "from salon.server.handlers import a, b\n",
        "salon/server/domain.py": "def g():\n    from salon.server.handlers import a\n",
        "salon/server/typed.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from salon.server.handlers.a import x\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert handler_imports(tmp_path / "salon") == {
        ("salon.server.domain", "salon.server.handlers.a"),
        ("salon.server.handlers.b", "salon.server.handlers.a"),
    }


def test_every_lazy_import_is_listed_with_its_reason() -> None:
    edges = import_edges()
    lazy = {(e.importer, e.imported) for e in edges if e.where == FUNCTION and e.named}
    eager = {(e.importer, e.imported) for e in edges if e.where == MODULE}
    assert sorted(lazy - LAZY_IMPORTS.keys()) == [], "import at the top, or list it with why"
    assert sorted(LAZY_IMPORTS.keys() - (lazy - eager)) == [], "listed, but not a lazy import"


def test_the_cycle_finder_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A cycle through a function counts, one through TYPE_CHECKING does not, nor a module
    importing its own package."""
    pkg = tmp_path / "salon"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from salon import b\n",
        "b.py": "def f():\n    from salon.c import thing\n",
        "c.py": "import salon.a\nthing = 1\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from salon import e\n",
        "e.py": "from . import d\n",
        "sub/__init__.py": "from salon.sub.f import g\n",
        "sub/f.py": "from salon.sub import h\ng = 1\n",
        "sub/h.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    edges = import_edges(pkg)
    assert strongly_connected(edges) == [["salon.a", "salon.b", "salon.c"]]
    lazy = [e for e in edges if e.where == FUNCTION]
    assert [(e.importer, e.imported) for e in lazy] == [("salon.b", "salon.c")]
    (pkg / "sub" / "h.py").write_text("from salon.sub import g\n")  # an attribute of sub
    assert strongly_connected(import_edges(pkg)) == [
        ["salon.a", "salon.b", "salon.c"],
        ["salon.sub", "salon.sub.f", "salon.sub.h"],
    ]
