"""Issue 19 point 8 on real processes: ``salon serve --workers N`` runs N nodes on the same
ports under a supervisor. Without [cluster] the supervisor starts a private redis-server
(tests/conftest.py checks that the Debian package is installed); each worker has its own
SQLite store, or all share the test's PostgreSQL.

Which worker a client landed on is read from /proc: the worker whose process holds the
server's end of the client's TCP connection. The kernel, not the test, picks the worker
(SO_REUSEPORT hashes the connection's addresses and ports), so ``connect(side, nick)``
opens connections until one lands on worker ``side + 1``."""

from __future__ import annotations

import hashlib
import http.client
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
from conftest import LineClient, SalonProcess, free_port
from nodehelpers import (
    join_and_messages_across,
    modes_and_operators_across,
    nick_held_on_the_other_side_is_433,
    one_order,
    opers,
    plain_irc_and_web_across,
    quits_after,
    races,
    users_across,
)

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60.0  # N processes starting on a busy 2-core machine
OPEN = "0A"  # /proc/net/tcp's state of a listening socket (TCP_LISTEN)


class Workers:
    """``salon serve --workers count`` as a real process, and where its clients are."""

    def __init__(self, tmp: Path, count: int, **overrides: Any) -> None:
        # Every test client comes from 127.0.0.1: no per-address limits.
        overrides.setdefault("connections", {}).update(max_per_ip=0, throttle=0)
        self.count = count
        self.proc = SalonProcess(tmp, opers=opers(), **overrides)
        self.proc.args = ("--workers", str(count))
        self.proc.start_timeout = START_TIMEOUT

    def start(self) -> Workers:
        self.proc.start()
        self.proc.wait_log(f"all {self.count} workers are listening", START_TIMEOUT)
        return self

    @property
    def port(self) -> int:
        return self.proc.irc_port

    def log(self) -> str:
        return self.proc.log()

    def pids(self) -> dict[int, int]:
        """Each worker's pid: the latest start the supervisor logged."""
        return {
            int(n): int(pid)
            for n, pid in re.findall(r"worker (\d+) started, pid (\d+)", self.log())
        }

    def worker_of(self, sock: socket.socket, port: int = 0, timeout: float = 10.0) -> int:
        """The number of the worker whose process holds the server's end of ``sock``, a
        connection to ``port`` (default: the IRC port)."""
        client_port = sock.getsockname()[1]
        deadline = time.monotonic() + timeout
        while True:
            inode = _server_inode(port or self.port, client_port)
            if inode:
                for number, pid in self.pids().items():
                    if _holds(pid, inode):
                        return number
            # Not accepted yet (the worker's loop takes it at its next turn).
            assert time.monotonic() < deadline, f"no worker holds the connection from {client_port}"
            time.sleep(0.01)

    def socket_on(self, side: int, port: int = 0) -> socket.socket:
        """A TCP connection to ``port`` (default: IRC) that landed on worker ``side + 1``."""
        port = port or self.port
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if self.worker_of(sock, port) == side + 1:
                return sock
            sock.close()
        raise AssertionError(f"200 connections, none on worker {side + 1}")

    def connect(self, side: int, nick: str | None, caps: str = "") -> LineClient:
        """A client on worker ``side + 1``, registered as ``nick`` unless None."""
        c = LineClient(self.port, sock=self.socket_on(side))
        if nick is not None:
            c.register(nick, caps)
        return c

    def plain(self, side: int) -> LineClient:
        """A client of the plain-text port on worker ``side + 1``."""
        return LineClient(self.proc.plain_port, sock=self.socket_on(side, self.proc.plain_port))

    def web(self, side: int) -> Any:
        """A WebSocket client on worker ``side + 1``."""
        from websockets.sync.client import connect as ws_connect

        port = self.proc.http_port
        sock = self.socket_on(side, port)
        return ws_connect(f"ws://127.0.0.1:{port}/", sock=sock, open_timeout=5)

    def http(self, side: int) -> http.client.HTTPConnection:
        """An HTTP connection to worker ``side + 1``."""
        port = self.proc.http_port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.sock = self.socket_on(side, port)
        return conn

    def status(self) -> list[tuple[str, int]]:
        """``salon cluster status`` of the private Redis: (node name, users) per node."""
        config = str(self.proc.config_path)
        done = subprocess.run(
            [sys.executable, "-m", "salon", "cluster", "status", "--config", config],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return [
            (name, int(users))
            for name, users in re.findall(r"^node \d+ (\S+): (\d+) users", done.stdout, re.M)
        ]

    def stop(self) -> int:
        return self.proc.stop(timeout=30)


def _server_inode(server_port: int, client_port: int) -> int:
    """The inode of the server's end of loopback connection client_port -> server_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == OPEN:
                continue
            if int(local.rsplit(":", 1)[1], 16) == server_port and (
                int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return int(fields[9])
    return 0


def _holds(pid: int, inode: int) -> bool:
    wanted = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                return True
        except OSError:
            continue
    return False


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    """Factory: ``workers(2)`` starts ``salon serve --workers 2`` (private Redis)."""
    started: list[Workers] = []

    def factory(count: int, **overrides: Any) -> Workers:
        sub = tmp_path / f"w{len(started)}"
        sub.mkdir()
        w = Workers(sub, count, **overrides)
        started.append(w)
        return w.start()

    yield factory
    for w in started:
        w.stop()


def test_bad_worker_counts_are_one_line_errors() -> None:
    for value, reason in (("0", "0 workers: from 1 to 64"), ("65", "65 workers: from 1 to 64")):
        done = subprocess.run(
            [sys.executable, "-m", "salon", "serve", "--workers", value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert done.stderr == f"salon serve: argument --workers: {reason} (try --help)\n"
    done = subprocess.run(
        [sys.executable, "-m", "salon", "serve", "--workers", "two"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "salon serve: argument --workers: 'two' is not a number of workers (try --help)\n",
    )


def test_without_redis_server_and_without_cluster_it_says_so(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without redis-server
    bare.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "salon", "serve", "--workers", "2", "--data-dir", "d"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "PATH": str(bare)},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "salon serve: --workers without a [cluster] section runs a private redis-server:"
        " install it (Debian: apt-get install redis-server) or configure [cluster]"
    )


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    """A port held by another program (without SO_REUSEPORT): the workers say why in one
    line each, and the supervisor stops them all and exits 2 instead of restarting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "salon", "serve", "--workers", "2", "--data-dir", "d"]
            + ["--host", "127.0.0.1", "--irc-port", str(port)]
            + [f"--{p}-port={free_port()}" for p in ("tls", "plain", "http")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 2, done.stderr
    assert re.search(
        rf"^salon serve: worker \d: cannot listen on 127\.0\.0\.1:{port} \(irc\): "
        "Address already in use$",
        done.stderr,
        re.M,
    ), done.stderr
    assert re.search(r"supervisor salon\.workers: worker \d could not start", done.stderr)
    assert not (tmp_path / "d" / "redis.sock").exists()


def test_200_connections_land_on_every_worker(workers: Callable[..., Workers]) -> None:
    w = workers(3)
    clients = []
    for i in range(200):
        c = LineClient(w.port)
        c.register(f"u{i}")
        clients.append(c)
    by_proc = {n: 0 for n in range(1, 4)}
    for c in clients:
        by_proc[w.worker_of(c.sock)] += 1
    # The same count from the nodes' heartbeats (renewed every second).
    deadline = time.monotonic() + 10
    while True:
        nodes = w.status()
        if sum(users for _name, users in nodes) == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    host = socket.gethostname()
    assert sorted(nodes) == sorted((f"{host}/{n}", users) for n, users in by_proc.items())
    print(f"200 connections over 3 workers: {sorted(by_proc.items())}")
    # A third each if the kernel's hash spreads them evenly; a worker without SO_REUSEPORT
    # could not have bound the port at all.
    assert min(by_proc.values()) >= 200 // 3 // 3, by_proc
    # A clean stop: every worker and Redis end, the supervisor exits 0.
    pids = w.pids()
    assert w.stop() == 0
    assert "all 3 workers stopped" in w.log()
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_a_killed_or_fenced_worker_is_started_again(workers: Callable[..., Workers]) -> None:
    """kill -9 of worker 1: clients of worker 2 see its users QUIT, their nicks are free,
    and the supervisor starts worker 1 again as a new node. Worker 2 paused past node_ttl
    is fenced (exit 3) when it wakes, and is started again too."""
    w = workers(2)
    gone = [w.connect(0, f"gone{i}") for i in range(3)]
    bob = w.connect(1, "bob")
    for c in [*gone, bob]:
        c.send("JOIN #c")
        c.expect(r" 366 ")
    time.sleep(0.3)
    first = w.pids()[1]
    gone_nicks = ["gone0", "gone1", "gone2"]
    worst = quits_after(lambda: os.kill(first, signal.SIGKILL), bob, gone_nicks)
    print(f"kill -9 of a worker: every QUIT seen on the other within {worst:.2f} s")
    bob.send("NICK gone0")  # free at once
    bob.expect(r"^:bob!\S+ NICK gone0$")
    w.proc.wait_log(f"worker 1 (pid {first}) was killed by SIGKILL; starting it again", 10)
    deadline = time.monotonic() + START_TIMEOUT
    while w.pids()[1] == first or w.log().count("worker 1 is listening") < 2:
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.1)
    # Dying again soon after its start: the next delay is twice the first.
    os.kill(w.pids()[1], signal.SIGKILL)
    w.proc.wait_log("starting it again in 1.0 s", 10)
    while w.log().count("worker 1 is listening") < 3:
        assert time.monotonic() < deadline + START_TIMEOUT, w.log()
        time.sleep(0.1)
    again = w.connect(0, None)  # on the new worker 1, which knows the network
    again.send("NICK gone0")
    again.send("USER x 0 * :x")
    again.expect(r" 433 \* gone0 ")
    again.send("NICK again")
    again.expect(r" 001 again ")
    again.send("JOIN #c")
    again.expect(r" 366 ")

    second = w.pids()[2]
    os.kill(second, signal.SIGSTOP)
    try:
        # node_ttl (3 s) and the other node's 0.5 s look: the network drops it.
        time.sleep(5)
    finally:
        os.kill(second, signal.SIGCONT)
    bob.expect(r"^ERROR :Closing Link: node lost its place in the network", timeout=10)
    w.proc.wait_log(
        f"worker 2 (pid {second}) exited 3: fenced by Redis; starting it again", START_TIMEOUT
    )
    deadline = time.monotonic() + START_TIMEOUT
    while w.log().count("worker 2 is listening") < 2:
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.1)
    back = w.connect(1, "back")
    back.send("JOIN #c")
    back.expect(r" 353 back = #c :.*again")  # who joined on worker 1 meanwhile
    assert w.stop() == 0


@pytest.mark.parametrize(
    "check",
    [
        nick_held_on_the_other_side_is_433,
        join_and_messages_across,
        modes_and_operators_across,
        lambda connect: one_order(connect, seconds=2.0),
        lambda connect: races(connect, rounds=30),
        users_across,
    ],
    ids=["433", "join-messages-names", "modes-operators", "one-order", "races", "users"],
)
def test_behaviour_between_clients_of_different_workers(
    workers: Callable[..., Workers], check: Callable[..., None]
) -> None:
    """Issue 19 points 3 to 5 between the clients of two workers, each worker on its own
    SQLite store: the same checks as between two nodes (tests/nodehelpers.py)."""
    w = workers(2)
    check(w.connect)


def test_plain_irc_and_web_users_of_different_workers(
    workers: Callable[..., Workers],
) -> None:
    """Point 3's last item between workers: the text port and the WebSocket listener are
    shared by the workers too."""
    w = workers(2, listen={"http_port": free_port()})
    plain_irc_and_web_across(w.connect, w.plain, w.web)


def test_workers_on_cluster_and_postgresql(
    tmp_path: Path, redis_server: Any, redis_prefix: str, postgres_dsn: str
) -> None:
    """With [cluster] and [postgres] the workers are nodes of that network (named after
    [cluster] node) sharing one store: history of a message sent on the other worker."""
    cluster = {"redis": redis_server.url, "node": "box", "prefix": redis_prefix}
    w = Workers(tmp_path, 2, cluster=cluster, postgres={"dsn": postgres_dsn, "retry_for": 5.0})
    try:
        w.start()
        assert "2 workers on the Redis of [cluster]" in w.log()
        join_and_messages_across(w.connect)
        assert sorted(name for name, _users in w.status()) == ["box/1", "box/2"]
    finally:
        w.stop()


def test_the_private_redis_killed_is_started_again(workers: Callable[..., Workers]) -> None:
    """The supervisor starts its Redis again at once; the workers keep their clients, and
    restate the network in the new, empty Redis: the same workers, no one disconnected, the
    channel and the nicks work across them again."""
    w = workers(2)
    before = w.pids()
    alice = w.connect(0, "alice")
    bob = w.connect(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
        c.expect(r" 366 ")
    redis_pid = int(re.findall(r"private redis-server on \S+ \(pid (\d+)\)", w.log())[-1])
    os.kill(redis_pid, signal.SIGKILL)
    w.proc.wait_log("the private redis-server exited (was killed by SIGKILL); starting it again")
    deadline = time.monotonic() + START_TIMEOUT
    while len(re.findall(r"private redis-server on \S+ \(pid (\d+)\)", w.log())) < 2:
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.1)
    alice.send("PRIVMSG #c :after the restart")
    bob.expect(r"^:alice!\S+ PRIVMSG #c :after the restart$", timeout=30)
    late = w.connect(1, None)
    late.send("NICK alice")
    late.send("USER late 0 * :late")
    late.expect(r" 433 \* alice ")
    assert w.pids() == before
    assert "starting it again in" not in w.log()  # (no worker restarted)


def test_a_one_process_store_carries_over_to_the_workers(tmp_path: Path) -> None:
    """An account made in the data directory before the first --workers start logs in on
    every worker: each worker's first store is a copy of DATA/salon.db."""
    from accounthelpers import sasl_plain_login

    w = Workers(tmp_path, 2)
    args = ["account", "create", "carol", "long enough pw", "--config", str(w.proc.config_path)]
    made = subprocess.run(
        [sys.executable, "-m", "salon", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    try:
        w.start()
        assert w.log().count("store copied from") == 2
        for side in (0, 1):
            sasl_plain_login(w.connect(side, None), f"carol{side}", "carol", "long enough pw")
    finally:
        w.stop()


def test_a_file_uploaded_on_one_worker_is_served_by_the_other(
    workers: Callable[..., Workers],
) -> None:
    """The file host under --workers: every worker keeps its blobs in the supervisor's
    files directory, and the files' records travel on the bus as between nodes."""
    from filehelpers import PASSWORD, Answer, basic, path_of

    port = free_port()
    w = workers(
        2,
        listen={"http_port": port},
        accounts={"password_min_length": 4},
        files={"public_url": f"http://127.0.0.1:{port}", "min_free": 0, "min_free_percent": 0.0},
    )

    def ask(side: int, method: str, path: str, **options: Any) -> Answer:
        conn = w.http(side)
        try:
            conn.request(method, path, **options)
            return Answer(conn.getresponse())
        finally:
            conn.close()

    alice = w.connect(0, "alice")
    alice.send(f"REGISTER * * :{PASSWORD}")
    alice.expect(r"REGISTER SUCCESS alice")
    data = b"uploaded to worker 1\n"
    headers = {
        **basic("alice"),
        "Content-Type": "text/plain",
        "Content-Disposition": "attachment; filename=notes.txt",
    }
    up = ask(0, "POST", "/upload", body=data, headers=headers)
    assert up.status == 201, up.body
    path = path_of(up.header("Location"))
    got = ask(1, "GET", path, headers=basic("alice"))
    assert (got.status, got.body) == (200, data)
    assert ask(1, "DELETE", path, headers=basic("alice")).status == 204
    deadline = time.monotonic() + 5
    while ask(0, "GET", path, headers=basic("alice")).status != 410:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    blobs = w.proc.data_dir / "files"
    assert [p.name for p in blobs.rglob("*") if p.is_file() and len(p.name) == 64] == [
        hashlib.sha256(data).hexdigest()
    ]


def test_nothing_outlives_a_killed_supervisor(workers: Callable[..., Workers]) -> None:
    """kill -9 of the supervisor: its workers and its Redis get SIGTERM from the kernel
    (the parent-death signal) and end; none is left serving without a supervisor."""
    w = workers(2)
    redis_pid = int(re.findall(r"private redis-server on \S+ \(pid (\d+)\)", w.log())[-1])
    children = [*w.pids().values(), redis_pid]
    assert w.proc.proc is not None
    w.proc.proc.kill()
    w.proc.proc.wait()
    deadline = time.monotonic() + 30
    while not all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in children):
        assert time.monotonic() < deadline, children
        time.sleep(0.1)
