"""The one list of Debian packages the tests drive (scripts/test-packages.txt): install-deps.sh
reads it, the session guard in conftest.py checks it, and every program a test runs comes
from a package on it (or from an Essential one, which every Debian system has)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

from conftest import INSTALL_DEPS, ROOT, install_deps, missing_packages

TESTS = ROOT / "tests"
# Calls whose first argument is a command line: subprocess's, and the tests' own wrappers
# that take one (Tmux.start in test_real_clients.py).
RUNNERS = {"run", "Popen", "check_call", "check_output", "call", "start"}
NO_SUCH_PACKAGE = "salon-no-such-package"
# irctest's controller: scripts/irctest.sh runs it from irctest's own checkout, not make test.
NOT_PYTEST = {"irctest_salon.py"}


def programs_run(source: str) -> set[str]:
    """The programs ``source`` runs, as far as its text says: the first word of a command
    line given to a runner as a literal list, the first argument of create_subprocess_exec,
    what shutil.which looks for, and Playwright's executable_path. A name bound once at
    module level to a string counts as that string."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def string(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        if isinstance(node, ast.Starred) and isinstance(node.value, ast.List | ast.Tuple):
            return string(node.value.elts[0]) if node.value.elts else None
        return None

    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0] if node.args else None
        word: str | None = None
        if name in RUNNERS and isinstance(first, ast.List | ast.Tuple) and first.elts:
            word = string(first.elts[0])
        elif name in ("create_subprocess_exec", "which") and first is not None:
            word = string(first)
        found.update({word} if word else set())
        found.update(
            value
            for keyword in node.keywords
            if keyword.arg == "executable_path" and (value := string(keyword.value))
        )
    return found


def owners(paths: list[str]) -> dict[str, str]:
    """The package each path belongs to, per dpkg (paths no package owns are left out)."""
    res = subprocess.run(
        ["dpkg-query", "-S", *paths], capture_output=True, text=True, timeout=60, check=False
    )
    found = {}
    for line in res.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        packages, _, path = line.partition(": ")
        found[path] = packages.split(",")[0].split(":")[0].strip()
    return found


def essential(package: str) -> bool:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Essential}", package],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return res.stdout.strip() == "yes"


def test_the_scanner_sees_each_way_a_test_runs_a_program() -> None:
    sample = """
import asyncio, shutil, subprocess
BROWSER = "/usr/bin/browser"
subprocess.run(["alpha", "-x"], check=True)
subprocess.Popen([*("beta", "--dir", "d"), *("-P", "x")])
asyncio.create_subprocess_exec("gamma", "arg")
shutil.which("delta")
tmux.start(["epsilon", "--home=h"])
pw.chromium.launch(executable_path=BROWSER, headless=True)
subprocess.run([sys.executable, "-m", "salon"])
subprocess.run(cmd)
print(["not", "a", "command"])
"""
    assert programs_run(sample) == {
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "/usr/bin/browser",
    }


def test_every_program_the_tests_run_comes_from_a_listed_package() -> None:
    listed = set(install_deps("--list").stdout.split())
    used: dict[str, str] = {}  # program -> the first test file that runs it
    for path in sorted(p for p in TESTS.rglob("*.py") if p.name not in NOT_PYTEST):
        for program in programs_run(path.read_text(encoding="utf-8")):
            used.setdefault(program, str(path.relative_to(TESTS)))
    assert used, "the scanner found no program in the tests"
    where: dict[str, str] = {}
    for program, test in sorted(used.items()):
        found = program if os.path.isabs(program) else shutil.which(program)
        assert found and os.path.exists(found), (
            f"{program} (run by tests/{test}) is not installed: its package belongs in "
            "scripts/test-packages.txt"
        )
        where[program] = found
    # With a merged /usr, dpkg may know a program by its /bin or /usr/bin name only.
    candidates = {
        p: [path, os.path.realpath(path), path.removeprefix("/usr"), "/usr" + path]
        for p, path in where.items()
    }
    known = owners(sorted({c for cs in candidates.values() for c in cs}))
    for program, paths in sorted(candidates.items()):
        package = next((known[c] for c in paths if c in known), None)
        assert package is not None, f"no Debian package owns {where[program]} ({program})"
        assert package in listed or essential(package), (
            f"{program} (run by tests/{used[program]}) comes from {package}, which is not in "
            "scripts/test-packages.txt"
        )


def test_the_list_is_package_names_without_repeats() -> None:
    res = install_deps("--list")
    assert res.returncode == 0, res.stderr
    names = res.stdout.split()
    assert names and len(names) == len(set(names)), names


def test_install_deps_reads_names_comments_and_blank_lines(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text("# what the tests need\n\n  dpkg   # the package manager\ncoreutils")
    res = install_deps("--list", str(listing))
    assert (res.returncode, res.stdout, res.stderr) == (0, "dpkg\ncoreutils\n", "")


def test_install_deps_refuses_a_line_that_is_not_one_package(tmp_path: Path) -> None:
    for line in ("irssi tmux", "Irssi", "-y"):
        listing = tmp_path / "packages.txt"
        listing.write_text(f"dpkg\n{line}\n")
        res = install_deps("--list", str(listing))
        assert res.returncode == 2, (line, res)
        assert res.stderr == f"{listing}:2: not one Debian package name: {line}\n"


def test_install_deps_does_nothing_when_all_are_present(tmp_path: Path) -> None:
    """Idempotent: no apt-get (which would need root and the network) when nothing is missing."""
    listing = tmp_path / "packages.txt"
    listing.write_text("dpkg\ncoreutils\n")
    res = install_deps("install", str(listing))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert install_deps("--missing", str(listing)).returncode == 0


def test_a_missing_package_is_named_in_one_line(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text(f"dpkg\n{NO_SUCH_PACKAGE}\ncoreutils\n")
    res = install_deps("--missing", str(listing))
    assert (res.returncode, res.stdout) == (1, f"{NO_SUCH_PACKAGE}\n")
    assert missing_packages(listing) == (
        f"missing Debian package the tests need: {NO_SUCH_PACKAGE} (listed in {listing}; "
        "bash scripts/install-deps.sh installs it)"
    )
    listing.write_text("dpkg\ncoreutils\n")
    assert missing_packages(listing) is None


def test_install_deps_installs_what_is_missing_and_only_that(tmp_path: Path) -> None:
    """apt-get update, then apt-get install of the missing packages alone, recommends left
    out (the list names everything the tests use). apt-get here is a stand-in that records
    its arguments: the real one needs root and the network, and would change this machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name, body in (("apt-get", f'echo "$*" >> {calls}'), ("sudo", 'exec "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    listing = tmp_path / "packages.txt"
    listing.write_text(f"dpkg\n{NO_SUCH_PACKAGE}\ncoreutils\n")
    res = subprocess.run(
        ["bash", str(INSTALL_DEPS), "install", str(listing)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert (res.returncode, res.stdout) == (0, f"installing: {NO_SUCH_PACKAGE}\n"), res
    assert calls.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {NO_SUCH_PACKAGE}",
    ]


def test_install_deps_without_dpkg_says_so_in_one_line(tmp_path: Path) -> None:
    """Not Debian: the packages cannot be checked, which stops the session guard in one line
    (a run that skipped the clients and the browser would pass without testing them)."""
    bin_dir = tmp_path / "bin"  # a PATH with bash and the tools the script uses, no dpkg
    bin_dir.mkdir()
    for name in ("dirname", "grep", "id"):
        (bin_dir / name).symlink_to(shutil.which(name) or name)
    res = subprocess.run(
        [shutil.which("bash") or "bash", str(INSTALL_DEPS), "--missing"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(bin_dir)},
    )
    assert res.returncode == 2, res
    assert res.stderr == (
        f"install-deps.sh: no dpkg-query here; the packages in {INSTALL_DEPS.parent}/"
        "test-packages.txt are Debian's\n"
    )
