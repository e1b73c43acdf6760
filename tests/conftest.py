"""Shared fixtures: a real salon server process on free loopback ports, and a small client."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from salon.proto.message import Message, parse

ROOT = Path(__file__).resolve().parent.parent
# The one list of the Debian packages the tests drive, and the script that reads it.
INSTALL_DEPS = ROOT / "scripts" / "install-deps.sh"
TEST_PACKAGES = ROOT / "scripts" / "test-packages.txt"


def install_deps(*args: str) -> subprocess.CompletedProcess[str]:
    """``scripts/install-deps.sh`` with ``args`` (``--list`` or ``--missing``, and a list)."""
    return subprocess.run(
        ["bash", str(INSTALL_DEPS), *args], capture_output=True, text=True, timeout=60
    )


def missing_packages(listing: Path = TEST_PACKAGES) -> str | None:
    """None when every package ``listing`` names is installed; else the one line that says
    which are not (or why they cannot be checked: not Debian, a malformed line)."""
    res = install_deps("--missing", str(listing))
    missing = res.stdout.split()
    if res.returncode == 1 and missing:
        where = listing.relative_to(ROOT) if listing.is_relative_to(ROOT) else listing
        noun, it = ("package", "it") if len(missing) == 1 else ("packages", "them")
        return (
            f"missing Debian {noun} the tests need: {', '.join(missing)} "
            f"(listed in {where}; bash scripts/install-deps.sh installs {it})"
        )
    if res.returncode != 0:
        return res.stderr.strip() or f"{INSTALL_DEPS} exited {res.returncode}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Before any test runs (once, in the controller, not in each xdist worker): every
    package in scripts/test-packages.txt is installed, or the run stops in one line naming
    the missing ones. A missing client, plugin or browser is never a skip (a test that
    cannot run is not a pass) and never a test timing out while it waits for it."""
    if hasattr(config, "workerinput") or config.option.help:
        return
    problem = missing_packages()
    if problem is not None:
        pytest.exit(problem, returncode=2)


# Folders whose tests run salon or another program as a process, a browser or a real client:
# the `e2e` marker (pyproject.toml) is theirs, so `pytest -m "not e2e"` is the in-process suite.
E2E_DIRS = ("e2e", "bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = ROOT / "tests"
    for item in items:
        if item.path.relative_to(tests).parts[0] in E2E_DIRS:
            item.add_marker(pytest.mark.e2e)


# How long a started server may take to open its ports. A server that fails exits, and
# wait_port sees that at once, so a long wait costs nothing when start-up works; on a
# 2-core machine running the suite on both cores, a node joining its cluster has taken
# longer than ten seconds.
START_WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = START_WAIT, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(
    path: Path, sections: dict[str, dict[str, Any]], opers: list[dict[str, str]] | None = None
) -> None:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    for oper in opers or []:
        lines.append("[[oper]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in oper.items())
        lines.append("")
    path.write_text("\n".join(lines))


def wait_log(read: Callable[[], str], text: str, timeout: float = 10.0) -> str:
    """A server's log (``read()``) once it holds ``text``. Lines come late by design: the
    listeners accept before the start-up lines are written, and the core's server-log lines
    are written every 50 ms (runner.JOURNAL_EVERY)."""
    deadline = time.monotonic() + timeout
    while text not in (log := read()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert text in log, log
    return log


class SalonProcess:
    """``python -m salon serve`` as a real process on free ports, with its own data dir."""

    # Off unless a test sets them (to a free_port()); picked again, like the IRC and
    # plain ports, when a parallel test took the port meanwhile (a test reads the port it
    # got back from ``sections["listen"]``).
    WEB_PORTS = ("tls_port", "http_port", "https_port")

    def __init__(self, tmp: Path, **overrides: dict[str, Any]) -> None:
        self.tmp = tmp
        self.irc_port = free_port()
        self.plain_port = free_port()
        self.data_dir = tmp / "data"
        self.log_path = tmp / "server.log"
        sections: dict[str, dict[str, Any]] = {
            "server": {"name": "test.salon", "data_dir": str(self.data_dir)},
            "listen": {
                "host": "127.0.0.1",
                "irc_port": self.irc_port,
                "plain_port": self.plain_port,
                "tls_port": 0,
                "http_port": 0,
                "https_port": 0,
            },
            "flood": {"enabled": False},
            # Tests expect hosts to be 127.0.0.1; test_netlimits.py turns cloaking on.
            "cloak": {"enabled": False},
        }
        opers = overrides.pop("opers", None)
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        self.config_path = tmp / "salon.toml"
        self.sections = sections
        self.opers = opers
        write_config(self.config_path, sections, opers)  # type: ignore[arg-type]
        self.proc: subprocess.Popen[bytes] | None = None
        # More arguments of salon serve (--workers N), and how long its ports may take.
        self.args: tuple[str, ...] = ()
        self.start_timeout = START_WAIT

    def start(self) -> SalonProcess:
        """Start (or restart, on the same data directory) the server. A free port picked
        earlier may have been taken meanwhile by a parallel test: then new ports are picked."""
        for attempt in range(3):
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "salon", "serve"),
                    *("--config", str(self.config_path), *self.args),
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
            timeout = self.start_timeout
            try:
                wait_port(self.irc_port, timeout, proc=self.proc)
                wait_port(self.plain_port, timeout, proc=self.proc)
                for key in self.WEB_PORTS:
                    if self.sections["listen"].get(key):
                        wait_port(self.sections["listen"][key], timeout, proc=self.proc)
                return self
            except RuntimeError as exc:
                self._log.close()
                if attempt == 2 or "cannot listen" not in self.log():
                    raise RuntimeError(f"{exc}; its log:\n{self.log()[-2000:]}") from None
            self.irc_port = free_port()
            self.plain_port = free_port()
            self.sections["listen"].update(irc_port=self.irc_port, plain_port=self.plain_port)
            for key in self.WEB_PORTS:  # a test's own pick may have been taken too
                if self.sections["listen"].get(key):
                    self.sections["listen"][key] = free_port()
            write_config(self.config_path, self.sections, self.opers)  # type: ignore[arg-type]
        return self

    @property
    def http_port(self) -> int:
        return int(self.sections["listen"]["http_port"])

    @property
    def https_port(self) -> int:
        return int(self.sections["listen"]["https_port"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        return wait_log(self.log, text, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def salon(tmp_path: Path) -> Iterator[SalonProcess]:
    server = SalonProcess(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def make_salon(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``make_salon(flood={"enabled": True})`` starts a server with overrides."""
    started: list[SalonProcess] = []

    def factory(**overrides: Any) -> SalonProcess:
        sub = tmp_path / f"s{len(started)}"
        sub.mkdir()
        server = SalonProcess(sub, **overrides).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


class LineClient:
    """A blocking test client for IRC or the plain-text port."""

    def __init__(self, port: int, timeout: float = 5.0, sock: socket.socket | None = None) -> None:
        """A connection to ``port`` on loopback, or ``sock`` when given (connected)."""
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.lines: list[str] = []

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        if not data.endswith(b"\n"):
            data += b"\r\n"
        self.sock.sendall(data)

    def readline(self, timeout: float | None = None) -> str:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line; buffered {self.buf[:200]!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.lines.append(text)
        return text

    def expect(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        """Read lines until one matches ``pattern`` (re.search); return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{pattern!r} not seen; got {seen[-20:]}")
            line = self.readline(remaining)
            seen.append(line)
            m = rx.search(line)
            if m:
                return m

    def read_all(self, quiet: float = 0.3) -> list[str]:
        """Every line that arrives until ``quiet`` seconds pass without one."""
        out = []
        while True:
            try:
                out.append(self.readline(quiet))
            except (TimeoutError, ConnectionError):
                return out

    def read_batch(self, kind: str) -> list[Message]:
        """Read lines until a whole batch of ``kind`` has arrived; its messages, each of
        which must carry the batch's tag."""
        opened = self.expect(rf"BATCH \+\S+ {re.escape(kind)}")
        ref = opened.string.split("BATCH +", 1)[1].split()[0]
        out = []
        while True:
            msg = parse(self.readline())
            if msg.command == "BATCH" and msg.params[0] == "-" + ref:
                return out
            assert msg.tags.get("batch") == ref, msg
            out.append(msg)

    def register(self, nick: str, caps: str = "") -> None:
        if caps:
            self.send("CAP LS 302")
            self.send(f"CAP REQ :{caps}")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick} real")
        if caps:
            self.send("CAP END")
        self.expect(r" 001 ")
        self.expect(r" (376|422) ")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def connect() -> Iterator[Any]:
    """Factory for :class:`LineClient`, closing them all at the end."""
    clients: list[LineClient] = []

    def factory(port: int, timeout: float = 5.0) -> LineClient:
        c = LineClient(port, timeout)
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.close()


def irc_user(connect: Any, port: int, nick: str, *channels: str) -> LineClient:
    """A registered IRC user (through the ``connect`` fixture) in ``channels``."""
    c: LineClient = connect(port)
    c.register(nick)
    for chan in channels:
        c.send(f"JOIN {chan}")
        c.expect(rf" 366 {nick} {chan} ")
    return c


os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture
def net() -> Any:
    """An in-process core (tests/corehelpers.py) on a MemoryStore."""
    from corehelpers import Net

    return Net()


@pytest.fixture(params=["memory", "sqlite"])
def make_net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``make_net(history={...})``: an in-process core (tests/corehelpers.py) on a
    MemoryStore or on a real SQLite file; each test runs with both."""
    from corehelpers import Net, sqlite_net

    made: list[Net] = []

    def factory(**sections: Any) -> Net:
        if request.param == "memory":
            net = Net(**sections)
        else:
            net = sqlite_net(tmp_path / f"salon{len(made)}.db", **sections)
        made.append(net)
        return net

    yield factory
    for net in made:
        net.store.close()


# ---------------------------------------------------------------------------- PostgreSQL


def engine_server(found: Any, reason: str, make: Callable[[Any], Any]) -> Iterator[Any]:
    """A real engine (``make(found)``) started on a free loopback port for the session and
    stopped at the end. ``found`` None: not installed, which fails when ``CI=true`` and is
    a skip otherwise (the package guard above names the package first)."""
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = make(found)
    try:
        server.start(free_port())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL per test session (per xdist worker) (bench/pgserver.py)."""
    yield from running_postgres()


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL of one test alone (one that stops or restarts it)."""
    yield from running_postgres()


def running_postgres() -> Iterator[Any]:
    """A real PostgreSQL on a free loopback port, stopped and removed at the end."""
    from bench.pgserver import PostgresServer, find_bindir

    yield from engine_server(find_bindir(), _NO_POSTGRES, PostgresServer)


_NO_POSTGRES = "PostgreSQL is not installed (Debian package postgresql)"


def postgres_bindir() -> Path:
    """Where PostgreSQL's programs are. Without them: a failure when ``CI=true``, a skip
    otherwise (the package guard above names them first)."""
    from bench.pgserver import find_bindir

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(_NO_POSTGRES)
        pytest.skip(_NO_POSTGRES)
    return bindir


@pytest.fixture
def postgres_dsn(postgres_server: Any) -> Iterator[str]:
    """The DSN of a fresh, empty database of the session's PostgreSQL, dropped afterwards."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)


# ---------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real redis-server per test session (per xdist worker) (tests/redisserver.py)."""
    from redisserver import RedisServer, find_redis

    reason = "redis-server is not installed (Debian package redis-server)"
    yield from engine_server(find_redis(), reason, RedisServer)


@pytest.fixture
def redis_prefix(redis_server: Any) -> Iterator[str]:
    """A fresh key prefix on the session's Redis; its keys are deleted afterwards."""
    prefix = redis_server.prefix()
    try:
        yield prefix
    finally:
        redis_server.clean(prefix)
