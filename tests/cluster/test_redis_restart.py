"""Issue 19 point 7 on real processes: Redis stopped and started again under traffic, with
its data (an append-only file) and without (it comes back empty). Two ``salon serve``
nodes on a redis-server of the test's own, each with its own SQLite data directory."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess, engine_server

pytestmark = pytest.mark.e2e

CAPS = "message-tags server-time echo-message draft/chathistory batch"
OUTAGE = 4.0  # seconds Redis is away: longer than node_ttl (3 s), every heartbeat expires
RECOVERY = 10.0  # seconds after Redis is back within which everything must hold again


def running_redis(persist: bool) -> Iterator[Any]:
    from redisserver import RedisServer, find_redis

    reason = "redis-server is not installed (Debian package redis-server)"
    yield from engine_server(find_redis(), reason, lambda p: RedisServer(p, persist))


@pytest.fixture(params=[True, False], ids=["persistent", "empty"])
def own_redis(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A redis-server of this test alone, which it stops and starts again: with its data
    kept (an append-only file), or coming back empty."""
    yield from running_redis(request.param)


@pytest.fixture
def stopped_redis() -> Iterator[Any]:
    """A redis-server of this test alone, which it stops."""
    yield from running_redis(False)


@pytest.fixture
def kept_redis() -> Iterator[Any]:
    """A redis-server of this test alone, which it restarts with its data."""
    yield from running_redis(True)


def node_factory(tmp_path: Path, redis: Any) -> Iterator[Callable[[str], SalonProcess]]:
    started: list[SalonProcess] = []

    def factory(name: str) -> SalonProcess:
        sub = tmp_path / f"{name}{len(started)}"
        sub.mkdir()
        section = {"redis": redis.url, "node": name, "prefix": "r"}
        node = SalonProcess(sub, cluster=section).start()
        started.append(node)
        return node

    yield factory
    for node in started:
        node.stop()


@pytest.fixture
def nodes(tmp_path: Path, own_redis: Any) -> Iterator[Callable[[str], SalonProcess]]:
    yield from node_factory(tmp_path, own_redis)


@pytest.fixture
def kept_nodes(tmp_path: Path, kept_redis: Any) -> Iterator[Callable[[str], SalonProcess]]:
    yield from node_factory(tmp_path, kept_redis)


class Reader(threading.Thread):
    """Collects every line a client gets, in the background."""

    def __init__(self, client: LineClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.got: list[str] = []
        self.when: dict[str, float] = {}  # text of a channel message -> when it came
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                line = self.client.readline(0.2)
                self.got.append(line)
                if " PRIVMSG #r :" in line:
                    self.when[line.split(" PRIVMSG #r :", 1)[1]] = time.monotonic()
            except TimeoutError:
                continue
            except OSError:
                return

    def messages(self) -> list[tuple[str, str]]:
        """(msgid, text) of every channel message received."""
        found = []
        for line in list(self.got):
            if " PRIVMSG #r " in line:
                msgid = line.split("msgid=")[1].split(";")[0].split(" ")[0]
                found.append((msgid, line.split(" PRIVMSG #r :", 1)[1]))
        return found


def test_redis_restarted_under_traffic(
    nodes: Callable[[str], SalonProcess], own_redis: Any
) -> None:
    """No client is disconnected; every message sent before, during and after the outage
    reaches every member once; both replicas hold the truth again (and, after an empty
    restart, so does a node started afterwards); everything anyone saw is in history."""
    a, b = nodes("a"), nodes("b")
    names = ["a1", "b1", "a2", "b2"]
    clients = {}
    for nick in names:
        c = LineClient((a if nick[0] == "a" else b).irc_port)
        c.register(nick, CAPS)
        c.send("JOIN #r")
        c.expect(r" 366 ")
        clients[nick] = c
    time.sleep(0.3)
    for c in clients.values():
        c.read_all(0.1)
    readers = {nick: Reader(c) for nick, c in clients.items()}
    for r in readers.values():
        r.start()
    sent: list[str] = []
    stop = threading.Event()

    def talk() -> None:
        n = 0
        while not stop.is_set():
            nick = names[n % len(names)]
            text = f"{nick} {n}"
            clients[nick].send(f"PRIVMSG #r :{text}")
            sent.append(text)
            n += 1
            time.sleep(0.02)

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    time.sleep(1.0)
    own_redis.halt()
    time.sleep(OUTAGE / 2)
    # A change, and a user who registers and joins, while Redis is away: they wait.
    topic = "set while Redis was away"
    clients["a1"].send(f"TOPIC #r :{topic}")
    newcomer = LineClient(a.irc_port)
    for line in ("NICK a3", "USER a3 0 * :a3", "JOIN #r"):
        newcomer.send(line)
    time.sleep(OUTAGE / 2)
    own_redis.start(own_redis.port)
    back = time.monotonic()
    waited = list(sent)  # (sent while Redis was away)
    time.sleep(1.0)
    stop.set()
    talker.join(5)
    # Every message reaches every member once (echo included), within RECOVERY.
    wanted = sorted(sent)
    while time.monotonic() - back < RECOVERY + 20:  # (the figure is printed, then asserted)
        if all(sorted(t for _m, t in r.messages()) == wanted for r in readers.values()):
            break
        time.sleep(0.1)
    # (when the last of those sent while Redis was away, and the last of all, arrived)
    caught_up = max(r.when.get(t, back + 99) for r in readers.values() for t in waited) - back
    delivered = max(r.when.get(t, back + 99) for r in readers.values() for t in wanted) - back
    print(
        f"Redis restarted ({'with' if own_redis.persist else 'without'} its data) after "
        f"{OUTAGE:g} s: the {len(waited)} messages sent before it was back delivered "
        f"{caught_up:.2f} s after it was "
        f"back; traffic went on, and its last message {delivered:.2f} s after"
    )
    for nick, r in readers.items():
        texts = [t for _m, t in r.messages()]
        assert len(texts) == len(set(texts)), f"{nick} got a message twice"
        assert sorted(texts) == wanted, f"{nick} is missing {sorted(set(wanted) - set(texts))[:5]}"
        assert not [line for line in r.got if line.startswith("ERROR")], nick
        # (each sender's messages in the order sent)
        for sender in names:
            mine = [int(t.split()[1]) for t in texts if t.startswith(sender + " ")]
            assert mine == sorted(mine)
    assert caught_up < RECOVERY
    for r in readers.values():
        r.done.set()
        r.join(2)
    newcomer.expect(r" 366 a3 #r ", timeout=RECOVERY)
    # Nobody was disconnected, and both replicas hold the truth.
    truth = "@a1 a2 a3 b1 b2"
    for nick, c in clients.items():
        c.send("NAMES #r")
        listed = c.expect(r" 353 \S+ = #r :(.*)$").group(1)
        assert " ".join(sorted(listed.split(), key=lambda n: n.lstrip("@"))) == truth, nick
        c.send("TOPIC #r")
        assert c.expect(r" 332 \S+ #r :(.*)$").group(1) == topic
    if not own_redis.persist:
        # A node started now rebuilds the network from what the nodes restated.
        third = nodes("c")
        c = LineClient(third.irc_port)
        c.register("c1")
        c.send("NAMES #r")
        listed = c.expect(r" 353 \S+ = #r :(.*)$").group(1)
        assert " ".join(sorted(listed.split(), key=lambda n: n.lstrip("@"))) == truth
        c.send("TOPIC #r")
        assert c.expect(r" 332 c1 #r :(.*)$").group(1) == topic
        c.send("NICK a1")
        c.expect(r" 433 c1 a1 ")
    # Everything anyone saw is in history, on both nodes.
    seen = {m for r in readers.values() for m, _t in r.messages()}
    for nick in ("a1", "b1"):
        c = clients[nick]
        c.send(f"CHATHISTORY LATEST #r * {len(wanted) + 50}")
        stored = {m.tags["msgid"] for m in c.read_batch("chathistory") if m.command == "PRIVMSG"}
        assert seen <= stored, sorted(seen - stored)[:5]


def test_a_node_gives_up_after_redis_grace(tmp_path: Path, stopped_redis: Any) -> None:
    """Redis away for longer than redis_grace: the node closes its clients with an ERROR
    line and exits 3; a client waiting for its turn meanwhile gets that answer."""
    section = {"redis": stopped_redis.url, "node": "a", "prefix": "g", "redis_grace": 2.0}
    node = SalonProcess(tmp_path, cluster=section).start()
    try:
        c = LineClient(node.irc_port)
        c.register("waiter")
        stopped_redis.halt()
        started = time.monotonic()
        c.send("JOIN #wait")
        c.expect(r"^ERROR :Closing Link: node lost its place in the network", timeout=15)
        print(f"redis_grace 2 s: the node gave up {time.monotonic() - started:.2f} s after")
        assert node.proc is not None
        assert node.proc.wait(10) == 3
    finally:
        node.stop()


def test_a_node_reaped_before_a_restart_is_still_fenced(
    kept_nodes: Callable[[str], SalonProcess], kept_redis: Any
) -> None:
    """A node paused past node_ttl is reaped; Redis then restarts with its data (a new
    run_id), and the node wakes: taking its place again is refused, it closes its clients
    with ERROR and exits 3, while the other node's clients stay."""
    a, b = kept_nodes("a"), kept_nodes("b")
    sleeper = LineClient(a.irc_port)
    sleeper.register("sleeper")
    bob = LineClient(b.irc_port)
    bob.register("bob")
    for c in (sleeper, bob):
        c.send("JOIN #c")
        c.expect(r" 366 ")
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        bob.expect(r"^:sleeper!\S+ QUIT :\*\.net \*\.split$", timeout=30)
        kept_redis.halt()
        kept_redis.start(kept_redis.port)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    sleeper.expect(r"^ERROR :Closing Link: node lost its place in the network", timeout=15)
    assert a.proc.wait(10) == 3
    taker = LineClient(b.irc_port)
    taker.register("sleeper")
    bob.send("PING :still here")
    bob.expect(r" PONG \S+ :still here$", timeout=10)
