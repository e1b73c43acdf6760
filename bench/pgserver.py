"""A real PostgreSQL for the tests and the benchmarks: ``initdb`` in a temporary directory,
``postgres`` on a free loopback port, stopped (and its directory removed) at the end.

PostgreSQL refuses to run as root, and CI runs as root: there both programs run as the
``postgres`` user that Debian's package creates (``subprocess`` switches user in the
child, so no ``su`` process stands between the test and the server it stops).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

# Where Debian's postgresql-NN packages put the server programs.
DEBIAN_BINDIRS = "/usr/lib/postgresql"
START_TIMEOUT = 30.0  # seconds for initdb's cluster to accept connections
STOP_TIMEOUT = 10.0  # seconds a fast shutdown may take before SIGKILL
PORT_ATTEMPTS = 3  # ports tried when the one given is taken meanwhile
OWNER = "postgres"  # the account Debian's package makes, and the superuser initdb names


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL's programs (``initdb``, ``postgres``), if any."""
    root = Path(DEBIAN_BINDIRS)
    found = sorted(
        (p / "bin" for p in root.glob("*") if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


class PostgresServer:
    """One PostgreSQL cluster: for one test session (one per xdist worker), one test, or
    one benchmark. ``root``: the directory to keep it in (made if missing; a cluster
    already there is started as it is), else a new temporary one."""

    def __init__(
        self,
        bindir: Path,
        root: Path | None = None,
        settings: Sequence[str] = (),
        cpus: str = "",
    ) -> None:
        self.bindir = bindir
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="salon-pg-"))
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.data = self.root / "data"
        self.settings = tuple(settings)
        self.cpus = cpus  # taskset's list of CPUs the server runs on; empty: as its parent
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self._names = itertools.count(1)
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OWNER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, port: int) -> None:
        """initdb (unless the cluster exists), then the server on ``port``, or on another
        free port when a parallel test or program took that one meanwhile."""
        from bench.servers import free_port

        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.port = port
        for attempt in range(PORT_ATTEMPTS):
            logged = self._logged()
            try:
                self._run()
                return
            except RuntimeError:
                taken = "already in use" in self.log(since=logged)
                if not taken or attempt == PORT_ATTEMPTS - 1:
                    raise
            self.port = free_port()

    def _logged(self) -> int:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").stat().st_size
        return 0

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}

    def _initdb(self) -> None:
        env = self._env()
        log = self.root / "initdb.log"
        initdb = [
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", OWNER,
            "--auth=trust",  # loopback and the socket in our own directory only
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]  # fmt: skip
        with log.open("wb") as out:
            done = subprocess.run(
                initdb,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                timeout=120,
                **self.user,
            )
        if done.returncode:
            raise RuntimeError(f"initdb failed: {log.read_text(errors='replace')}")

    def _run(self) -> None:
        self._log = (self.root / "server.log").open("ab")
        server = [
            str(self.bindir / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            # TCP only: a Unix socket's path is limited to 107 bytes, and a cluster kept in
            # a deep directory (a benchmark's cache) would not start.
            "-c", "unix_socket_directories=",
            "-c", "listen_addresses=127.0.0.1",
            # Throwaway data: no durability, small memory.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "shared_buffers=32MB",
            "-c", "max_connections=40",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        for setting in self.settings:
            server += ["-c", setting]
        if self.cpus:
            server = ["taskset", "-c", self.cpus, *server]
        self.proc = subprocess.Popen(
            server,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self._env(),
            cwd=self.root,
            start_new_session=True,
            preexec_fn=parent_death(),
            **self.user,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log()}") from None
                time.sleep(0.05)

    def log(self, since: int = 0) -> str:
        """The end of the server's log, from byte ``since`` on."""
        with contextlib.suppress(OSError), (self.root / "server.log").open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")[-2000:]
        return ""

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={OWNER} dbname={dbname}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def restart(self, down: float = 0.0) -> None:
        """Fast shutdown, ``down`` seconds without a server, then the same cluster again
        on the same port."""
        self.halt()
        time.sleep(down)
        self._run()

    def stop(self, remove: bool = True) -> None:
        """Fast shutdown, then the directory goes (unless not ``remove``)."""
        self.halt()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected)."""
        proc, self.proc = self.proc, None
        # Signalled as the caller (root may signal the postgres user's process).
        end_process(proc, signal.SIGINT, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the thread that started it ends, even by
    SIGKILL, so a test run that is killed leaves no server behind (Linux; elsewhere
    nothing). Popen runs it after changing the user, which would clear it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def parent_death() -> Callable[[], None] | None:
    """``preexec_fn`` for a server process: :func:`die_with_parent` when started from the
    main thread. Linux signals the end of the starting *thread*, and a server restarted
    from a passing thread (a test's) must outlive it."""
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


def end_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send ``sig`` to a server started in a process group of its own, and SIGKILL the group
    when it has not exited ``timeout`` seconds later."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
