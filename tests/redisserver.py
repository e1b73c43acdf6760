"""A real Redis for the tests: ``redis-server`` on a free loopback port, with nothing
written to disk, stopped (and its directory removed) at the end. One per test session,
so one per xdist worker; each test takes a fresh key prefix (:meth:`RedisServer.prefix`)
whose keys are deleted after it. A test that restarts Redis starts one of its own
(``persist``: with an append-only file, so that a restart keeps the data)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from bench.pgserver import end_process, parent_death

START_TIMEOUT = 30.0  # seconds for redis-server to answer PING
STOP_TIMEOUT = 5.0


def find_redis() -> str | None:
    """The redis-server program (Debian package redis-server), if installed."""
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, program: str, persist: bool = False) -> None:
        self.program = program
        self.persist = persist
        self.root = Path(tempfile.mkdtemp(prefix="salon-redis-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self._names = itertools.count(1)

    def start(self, port: int) -> None:
        self.port = port
        self._log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.program,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--dir",
                str(self.root),
                "--daemonize",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            preexec_fn=parent_death(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.02)

    def ping(self) -> bool:
        """Whether the server answers PING (a raw RESP exchange: no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def prefix(self) -> str:
        """A key prefix no other test of this session uses."""
        return f"t{os.getpid()}_{next(self._names)}"

    def clean(self, prefix: str) -> None:
        """Delete every key under ``prefix``."""
        import redis

        with contextlib.closing(redis.Redis.from_url(self.url)) as conn:
            keys = list(conn.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                conn.delete(*keys)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def halt(self) -> None:
        """Stop the server (SIGTERM: a clean shutdown), keeping its directory: start()
        runs it again, with its data when ``persist``."""
        proc, self.proc = self.proc, None
        end_process(proc, signal.SIGTERM, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
