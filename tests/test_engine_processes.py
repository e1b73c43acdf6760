"""The engines the tests start (redis-server, PostgreSQL) end with the test run that
started them, even when it is killed: no fixture teardown runs then, and a server left
behind keeps its port, memory and temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import postgres_bindir
from redisserver import find_redis

REPO = Path(__file__).resolve().parent.parent

STARTER = """
import socket, sys, time
from redisserver import RedisServer
from bench.pgserver import PostgresServer, find_bindir

def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

redis = RedisServer(sys.argv[1]); redis.start(free())
pg = PostgresServer(find_bindir()); pg.start(free())
print(redis.proc.pid, pg.proc.pid, pg.root, redis.root, flush=True)
time.sleep(120)
"""


def test_a_killed_run_leaves_no_engine_behind() -> None:
    redis = find_redis()
    if redis is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (Debian package redis-server)")
        pytest.skip("redis-server is not installed")
    postgres_bindir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, redis], stdout=subprocess.PIPE, env=env, text=True
    )
    assert starter.stdout is not None
    redis_pid, pg_pid, *roots = starter.stdout.readline().split()
    pids = [int(redis_pid), int(pg_pid)]
    try:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in pids):
            assert time.monotonic() < deadline, "an engine outlived the killed run"
            time.sleep(0.1)
    finally:
        for pid in pids:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
