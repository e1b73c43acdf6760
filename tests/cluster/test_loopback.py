"""Issue 19 on real processes: two ``salon serve`` nodes on one real redis-server
(tests/redisserver.py), each with its own SQLite data directory, IRC clients on each."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path, redis_server: Any, redis_prefix: str) -> Iterator[Any]:
    """Factory: ``cluster("a")`` starts a node on the test's Redis prefix."""
    started: list[SalonProcess] = []

    def factory(name: str, **overrides: Any) -> SalonProcess:
        sub = tmp_path / f"{name}{len(started)}"
        sub.mkdir()
        section = {"redis": redis_server.url, "node": name, "prefix": redis_prefix}
        section.update(overrides.pop("cluster", {}))
        node = SalonProcess(sub, cluster=section, **overrides).start()
        started.append(node)
        return node

    yield factory
    for node in started:
        node.stop(signal.SIGKILL if node.proc and node.proc.poll() is None else signal.SIGTERM)


def client(node: SalonProcess, nick: str, caps: str = "") -> LineClient:
    c = LineClient(node.irc_port)
    c.register(nick, caps)
    return c


def test_a_nick_held_on_the_other_node_is_433(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = client(a, "alice")
    c = LineClient(b.irc_port)
    c.send("NICK alice")
    c.expect(r" 433 \* alice ")
    c.send("NICK bob")
    c.send("USER bob 0 * :Bob")
    c.expect(r" 001 bob ")
    c.send("NICK ALICE")
    c.expect(r" 433 bob ALICE ")
    alice.send("QUIT")
    # Once alice's QUIT had its turn, her nick is free on the other node too.
    deadline = time.monotonic() + 5
    while True:
        c.send("NICK alice")
        line = c.expect(r" 433 bob alice | NICK alice$").string
        if line.endswith("NICK alice") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert line == ":bob!bob@127.0.0.1 NICK alice"


def test_join_and_messages_cross_nodes(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a"), cluster("b")
    caps = "message-tags server-time echo-message"
    alice = client(a, "alice", caps)
    bob = client(b, "bob", caps)
    alice.send("JOIN #c")
    alice.expect(r" 366 ")
    bob.send("JOIN #c")
    bob.expect(r" 353 bob = #c :@alice bob")
    alice.expect(r":bob!bob@127\.0\.0\.1 JOIN #c")
    alice.send("PRIVMSG #c :hello from a")
    got = bob.expect(r"^@(\S+) :alice!alice@127\.0\.0\.1 PRIVMSG #c :hello from a$")
    echo = alice.expect(r"^@(\S+) :alice!alice@127\.0\.0\.1 PRIVMSG #c :hello from a$")
    assert sorted(got.group(1).split(";")) == sorted(echo.group(1).split(";"))
    bob.send("PRIVMSG alice :psst, alice")
    alice.expect(r":bob!bob@127\.0\.0\.1 PRIVMSG alice :psst, alice$")
    bob.send("NAMES #c")
    names_b = bob.expect(r" 353 ").string.split(" ", 3)[3]
    alice.send("NAMES #c")
    names_a = alice.expect(r" 353 ").string.split(" ", 3)[3]
    assert names_a.replace("alice =", "X =") == names_b.replace("bob =", "X =")


def test_kill_9_of_a_node_quits_its_users_within_5_s(
    cluster: Callable[..., SalonProcess],
) -> None:
    a, b = cluster("a"), cluster("b")
    gone = [client(a, f"a{i}") for i in range(5)]
    bob = client(b, "bob")
    for c in [*gone, bob]:
        c.send("JOIN #c")
        c.expect(r" 366 ")
    time.sleep(0.3)
    bob.read_all(0.2)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    quits: dict[str, float] = {}
    while len(quits) < 5 and time.monotonic() - killed < 8:
        try:
            line = bob.readline(0.5)
        except TimeoutError:
            continue
        if " QUIT " in line:
            quits[line[1:].split("!")[0]] = time.monotonic() - killed
    assert sorted(quits) == [f"a{i}" for i in range(5)]
    worst = max(quits.values())
    assert worst < 5.0, quits
    print(f"kill -9: every QUIT seen on the other node within {worst:.2f} s")
    # Their nicks are free at once.
    again = LineClient(b.irc_port)
    again.register("a0")
    # The killed node, started again, is a new node of the same network.
    a.start()
    c = LineClient(a.irc_port)
    c.send("NICK bob")
    c.expect(r" 433 \* bob ")


def test_off_means_off_nothing_imports_redis() -> None:
    """Without [cluster], neither the server nor the CLI imports redis; net.bus does."""
    code = (
        "import sys\nimport salon.cli, salon.net.runner, salon.server.core\n"
        "print('redis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    code = "import sys\nimport salon.net.bus\nprint('redis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
