"""Issue 19 on real processes: two ``salon serve`` nodes on one real redis-server
(tests/redisserver.py), each with its own SQLite data directory, IRC clients on each."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess
from nodehelpers import (
    join_and_messages_across,
    modes_and_operators_across,
    nick_held_on_the_other_side_is_433,
    on_nodes,
    one_order,
    opers,
    plain_irc_and_web_across,
    quits_after,
    races,
    stored_msgids,
    users_across,
)

from salon.proto.message import parse

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
        node.stop()


def client(node: SalonProcess, nick: str, caps: str = "") -> LineClient:
    return on_nodes(node)(0, nick, caps)


def alice_and_bob(a: SalonProcess, b: SalonProcess, chan: str, caps: str) -> list[LineClient]:
    """alice on ``a`` and bob on ``b``, both in ``chan``."""
    pair = [client(a, "alice", caps), client(b, "bob", caps)]
    for c in pair:
        c.send(f"JOIN {chan}")
        c.expect(r" 366 ")
    return pair


def test_a_nick_held_on_the_other_node_is_433(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a"), cluster("b")
    nick_held_on_the_other_side_is_433(on_nodes(a, b))


def test_join_and_messages_cross_nodes(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a"), cluster("b")
    join_and_messages_across(on_nodes(a, b))


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
    assert a.proc is not None
    proc = a.proc
    worst = quits_after(lambda: proc.send_signal(signal.SIGKILL), bob, [f"a{i}" for i in range(5)])
    print(f"kill -9: every QUIT seen on the other node within {worst:.2f} s")
    assert worst < 5.0
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


def test_a_paused_node_is_fenced_and_closes_its_clients(
    cluster: Callable[..., SalonProcess],
) -> None:
    """SIGSTOP past node_ttl: its users quit on the other node, their nicks are taken
    there, and the node, woken, is refused by Redis and closes its clients with ERROR,
    answering nothing from its stale copy of the network before (where sleeper would
    still hold the nick that taker holds on B)."""
    a, b = cluster("a"), cluster("b")
    sleeper = client(a, "sleeper")
    bob = client(b, "bob")
    for c in (sleeper, bob):
        c.send("JOIN #c")
        c.expect(r" 366 ")
    bob.read_all(0.2)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        bob.expect(r"^:sleeper!\S+ QUIT :\*\.net \*\.split$", timeout=30)
        print(f"SIGSTOP: the QUIT seen on the other node after {time.monotonic() - stopped:.2f} s")
        taker = client(b, "sleeper")  # free on the live node
        taker.send("JOIN #c")
        taker.expect(r" 366 ")
        taker.send("PRIVMSG #c :the nick is mine now")
        bob.expect(r"PRIVMSG #c :the nick is mine now$")
    finally:
        sleeper.send("WHOIS sleeper")  # read by the node as soon as it wakes
        a.proc.send_signal(signal.SIGCONT)
    sleeper.expect(r"^ERROR :Closing Link: node lost its place in the network", timeout=10)
    # Woken, it showed nothing of the network after its death: no answer from its copy
    # (in which sleeper still held the nick), no line of the other user by that nick.
    assert [line for line in sleeper.lines if " 311 " in line or "mine now" in line] == []
    assert a.proc.wait(10) == 3
    taker.send("WHOIS sleeper")
    taker.expect(r" 311 sleeper sleeper sleeper 127\.0\.0\.1 ")


def test_one_order_on_real_redis(cluster: Callable[..., SalonProcess]) -> None:
    """Issue 19 point 4: three senders on each node flood one channel for 10 s."""
    a, b = cluster("a"), cluster("b")
    one_order(on_nodes(a, b))


def test_races_on_real_redis(cluster: Callable[..., SalonProcess]) -> None:
    """Issue 19 point 5: 200 rounds of each race (about 5 s on the shared machine)."""
    a, b = cluster("a"), cluster("b")
    races(on_nodes(a, b))


def test_a_node_stopped_cleanly_quits_its_users_at_once(
    cluster: Callable[..., SalonProcess],
) -> None:
    a, b = cluster("a"), cluster("b")
    leaver = client(a, "leaver")
    bob = client(b, "bob")
    for c in (leaver, bob):
        c.send("JOIN #c")
        c.expect(r" 366 ")
    bob.read_all(0.2)
    started = time.monotonic()
    assert a.stop(signal.SIGTERM) == 0
    # Its own QUIT (the reason says so), not the split that the heartbeat's expiry makes.
    bob.expect(r"^:leaver!\S+ QUIT :Server shutting down$", timeout=30)
    print(f"SIGTERM: the QUIT seen on the other node after {time.monotonic() - started:.2f} s")
    again = LineClient(b.irc_port)
    again.register("leaver")


def test_kill_9_under_traffic(cluster: Callable[..., SalonProcess]) -> None:
    """Issue 19 point 6: node A with 50 users in two shared channels, channel messages
    and private messages both ways in flight, killed with SIGKILL and started again,
    SALON_KILL_RUNS times (2 by default for the suite's time; 10 for the measurement in
    docs/cluster.md). In every run each of A's users is seen to QUIT by every user on B
    within 5 s of the kill; their nicks are free on B at once; no client on either node
    got any message twice (received or echoed); every message that any client received
    or saw echoed, in either channel or in a private conversation with a user on B, is in
    CHATHISTORY on B; and A, started again, is a new node of the same network."""
    import os

    runs = int(os.environ.get("SALON_KILL_RUNS", "2"))
    a, b = cluster("a"), cluster("b")
    caps = "message-tags server-time echo-message draft/chathistory batch"
    watchers = [client(b, f"w{i}", caps) for i in range(3)]
    for w in watchers:
        w.send("JOIN #c1,#c2")
        w.expect(r" 366 \S+ #c2 ")
    numbers = [node_number(a)]
    worst = []
    for run in range(runs):
        worst.append(_kill_run(a, b, watchers, run))
        a.start()
        numbers.append(node_number(a))
    print(f"kill -9 under traffic, {runs} runs: every QUIT seen on B within {max(worst):.2f} s")
    assert max(worst) < 5.0, worst
    # Each start took a new number, and the restarted node holds the network's state.
    assert numbers == sorted(set(numbers)), numbers
    c = LineClient(a.irc_port)
    c.send("NICK w0")
    c.expect(r" 433 \* w0 ")


def node_number(node: SalonProcess) -> int:
    """The cluster node number ``node``'s log says it took at its last start."""
    found = re.search(r"cluster node (\d+) \(", node.wait_log(", prefix "))
    assert found is not None
    return int(found.group(1))


def read_many(clients: list[LineClient], seen: list[list[str]], done: Any) -> None:
    """Read every line of ``clients`` into ``seen`` (one list each) until ``done`` is set
    or every connection is closed: one thread for the 50 users of a node."""
    import selectors

    sel = selectors.DefaultSelector()
    bufs: dict[int, bytes] = {}
    for i, c in enumerate(clients):
        *lines, bufs[i] = c.buf.split(b"\n")
        seen[i] += [line.rstrip(b"\r").decode() for line in lines]
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, i)
    while not done.is_set() and sel.get_map():
        for key, _ in sel.select(0.2):
            i = key.data
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                continue
            *lines, bufs[i] = (bufs[i] + data).split(b"\n")
            seen[i] += [line.rstrip(b"\r").decode() for line in lines]
    sel.close()


def msgids(lines: list[str], command: str = "PRIVMSG") -> list[tuple[str, str, str]]:
    """(msgid, source nick, target) of each ``command`` among ``lines``."""
    out = []
    for line in lines:
        if f" {command} " in line and line.startswith("@"):
            msg = parse(line)
            out.append((msg.tags["msgid"], (msg.source or "").split("!")[0], msg.params[0]))
    return out


def _kill_run(a: SalonProcess, b: SalonProcess, watchers: list[LineClient], run: int) -> float:
    """One run of test_kill_9_under_traffic; the latest QUIT's delay after the kill."""
    # (draft/chathistory: no replay of A's own store on join, which the restarted A would
    # show from its store: test_a_message_committed_but_never_ordered_is_not_replayed)
    caps = "message-tags server-time echo-message draft/chathistory batch"
    names = [f"u{run}x{i}" for i in range(50)]
    users = [client(a, nick, caps) for nick in names]
    for u in users:
        u.send("JOIN #c1,#c2")
    for u in users:
        u.expect(r" 366 \S+ #c2 ")
    for w in watchers:
        w.read_all(0.2)
    seen: list[list[str]] = [[] for _ in watchers]
    seen_a: list[list[str]] = [[] for _ in users]
    quits: list[dict[str, float]] = [{} for _ in watchers]
    killed = [0.0]
    done = threading.Event()

    def watch(i: int) -> None:
        while not done.is_set():
            try:
                line = watchers[i].readline(0.2)
            except TimeoutError:
                continue
            seen[i].append(line)
            if " QUIT " in line and killed[0]:
                quits[i][line.split("!")[0].split(" :")[-1]] = time.monotonic() - killed[0]

    def talk() -> None:
        n = 0
        while not done.is_set():
            u = users[n % len(users)]
            try:
                u.send(f"PRIVMSG #c{1 + n % 2} :m{n}")
                u.send(f"PRIVMSG w{n % 3} :dm{n}")
                if n % 4 == 0:  # and private messages from B to A
                    watchers[n % 3].send(f"PRIVMSG {names[(n // 4) % 50]} :back{n}")
            except OSError:
                return
            n += 1
            time.sleep(0.001)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(watchers))]
    threads.append(threading.Thread(target=read_many, args=(users, seen_a, done)))
    threads.append(threading.Thread(target=talk))
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    killed[0] = time.monotonic()
    deadline = killed[0] + 30  # (ends a hang; the 5 s are asserted by the caller)
    while time.monotonic() < deadline and not all(set(q) >= set(names) for q in quits):
        time.sleep(0.05)
    done.set()
    for t in threads:
        t.join(5)
    for q in quits:
        assert set(q) >= set(names)
    for u in users:
        u.sock.close()
    assert a.stop() == -signal.SIGKILL
    # Their nicks are free at once on B.
    taker = client(b, "taker")
    for nick in names:
        taker.send(f"NICK {nick}")
        taker.expect(rf"^:\S+ NICK {nick}$")
    taker.send("QUIT")
    # Nothing twice, for any client of either node, received or echoed.
    got = [msgids(lines) for lines in seen + seen_a]
    for mine in got:
        assert len(mine) == len({m for m, _s, _t in mine}), "a message delivered twice"
    # Everything any of them got is in B's history: the channels' ...
    everything = {entry for mine in got for entry in mine}
    w = watchers[0]
    for chan in ("#c1", "#c2"):
        sent = {"msgid=" + m for m, _s, t in everything if t == chan}
        listed = stored_msgids(w, chan)
        stored = set(listed)
        assert len(listed) == len(stored), "stored twice"
        assert sent <= stored, (chan, len(sent - stored), sorted(sent - stored)[:5])
        assert len(sent) > 20, (chan, len(sent))  # (traffic there was)
    # ... and each conversation between a user of A and a user of B, read on B.
    wnicks = {f"w{i}" for i in range(len(watchers))}
    pairs: dict[tuple[str, str], set[str]] = {}
    for m, source, target in everything:
        if target in wnicks:
            pairs.setdefault((target, source), set()).add("msgid=" + m)
        elif source in wnicks:
            pairs.setdefault((source, target), set()).add("msgid=" + m)
    assert sum(len(v) for v in pairs.values()) > 20, pairs
    for (wnick, other), sent in pairs.items():
        reader = watchers[int(wnick[1:])]
        listed = stored_msgids(reader, other)
        stored = set(listed)
        assert len(listed) == len(stored), "stored twice"
        assert sent <= stored, (wnick, other, sorted(sent - stored)[:5])
    return max(q[n] for q in quits for n in names)


class FreezableProxy:
    """A TCP forwarder to ``port`` on loopback, in threads: :meth:`freeze` stops passing
    on anything more of the connections open now (what they send is dropped), while new
    connections go through. A node's link to Redis cut at a chosen moment."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.live: list[Any] = []  # [frozen flag, client socket, upstream socket]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            link = [False, down, up]
            self.live.append(link)
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(link, src, dst), daemon=True).start()

    def _pump(self, link: list[Any], src: Any, dst: Any) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                if not link[0]:
                    dst.sendall(data)
            except OSError:
                break
        for sock in link[1:]:
            with contextlib.suppress(OSError):
                sock.close()

    def freeze(self) -> None:
        for link in self.live:
            link[0] = True

    def close(self) -> None:
        self.listener.close()
        for link in self.live:
            for sock in link[1:]:
                with contextlib.suppress(OSError):
                    sock.close()


def test_a_message_committed_but_never_ordered_is_not_replayed(
    cluster: Callable[..., SalonProcess], redis_server: Any
) -> None:
    """A message is committed to the origin's store before it is sent to the log. If the
    node dies in between (here: its link to Redis frozen, then kill -9), nobody got the
    message, and B's history rightly lacks it. A, started again on the same data
    directory, must not show it either: a client joining there would get a message that
    no client of B can find in CHATHISTORY (point 6: what any client received is in B's
    history), and the two nodes' histories of the channel would differ."""
    proxy = FreezableProxy(redis_server.port)
    try:
        a = cluster("a", cluster={"redis": f"redis://127.0.0.1:{proxy.port}"})
        b = cluster("b")
        caps = "message-tags server-time echo-message draft/chathistory batch"
        alice, bob = alice_and_bob(a, b, "#c", caps)
        alice.send("PRIVMSG #c :in order")
        bob.expect(r"PRIVMSG #c :in order$")
        alice.expect(r"PRIVMSG #c :in order$")
        proxy.freeze()
        alice.send("PRIVMSG #c :committed, never ordered")
        time.sleep(0.5)  # (committed to A's store; its turn waits on the frozen link)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        bob.expect(r"^\S+ :alice!\S+ QUIT :\*\.net \*\.split$", timeout=30)
        assert a.stop() == -signal.SIGKILL
        assert not [line for line in alice.lines + bob.lines if "never ordered" in line]
        a.start()
        late = client(a, "late")  # (no draft/chathistory: the last lines on join)
        late.send("JOIN #c")
        late.expect(r" 366 ")
        replayed = [line.split(" :", 1)[-1] for line in late.read_all(0.5) if " PRIVMSG " in line]
        assert replayed == ["in order"]
        on_a = client(a, "reader", caps)
        on_a.send("JOIN #c")  # (only a member reads a channel's history)
        on_a.expect(r" 366 ")
        assert stored_msgids(on_a, "#c") == stored_msgids(bob, "#c")
    finally:
        proxy.close()


def cluster_status(node: SalonProcess) -> list[str]:
    """``salon cluster status`` with ``node``'s config: its lines."""
    done = subprocess.run(
        [sys.executable, "-m", "salon", "cluster", "status", "--config", str(node.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_cluster_status_shows_the_nodes_and_their_users(
    cluster: Callable[..., SalonProcess],
) -> None:
    a, b = cluster("a"), cluster("b")
    users = [client(a, "one"), client(a, "two"), client(b, "three")]
    deadline = time.monotonic() + 5
    while True:
        lines = cluster_status(a)
        out = "\n".join(lines)
        if (" a: 2 users" in out and " b: 1 users" in out) or (time.monotonic() > deadline):
            break
        time.sleep(0.2)
    assert lines[0].endswith("; 2 node(s)"), lines
    assert re.fullmatch(r"node \d+ a: 2 users, 0 entries behind, heartbeat \d\.\d s left", lines[1])
    assert re.fullmatch(r"node \d+ b: 1 users, 0 entries behind, heartbeat \d\.\d s left", lines[2])
    assert users
    b.stop()
    lines = cluster_status(a)
    assert lines[0].endswith("; 1 node(s)"), lines


def test_cluster_status_shows_a_node_s_inbox_lag(cluster: Callable[..., SalonProcess]) -> None:
    """A node paused (SIGSTOP, short of node_ttl) while the other sends: the status shows
    it behind by at least the log items sent since, and caught up once it runs again."""
    slow = {"cluster": {"node_ttl": 15.0}}  # (the pause is not taken for a death)
    a, b = cluster("a", **slow), cluster("b", **slow)
    bob = client(b, "bob", "echo-message")
    bob.send("JOIN #lag")
    bob.expect(r" 366 ")
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(8):  # (each waits for its echo: one log item each)
            bob.send(f"PRIVMSG #lag :while a sleeps {i}")
            bob.expect(rf"PRIVMSG #lag :while a sleeps {i}$")
        time.sleep(1.2)  # (b's next heartbeat records that it applied them)
        lines = cluster_status(b)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    behind = {
        m.group(1): int(m.group(2))
        for line in lines
        if (m := re.fullmatch(r"node \d+ (\w+): \d+ users, (\d+) entries behind, .*", line))
    }
    assert behind["a"] >= 8 and behind["b"] == 0, lines
    # Running again, it applies them, and its next heartbeat says so.
    deadline = time.monotonic() + 10
    while True:
        lines = cluster_status(b)
        if re.fullmatch(r"node \d+ a: 0 users, 0 entries behind, .*", lines[1]):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.3)


def test_a_plain_text_user_on_a_talks_with_irc_and_web_users_on_b(
    cluster: Callable[..., SalonProcess],
) -> None:
    from conftest import free_port
    from websockets.sync.client import connect as ws_connect

    nodes = cluster("a"), cluster("b", listen={"http_port": free_port()})
    plain_irc_and_web_across(
        on_nodes(*nodes),
        lambda side: LineClient(nodes[side].plain_port),
        lambda side: ws_connect(f"ws://127.0.0.1:{nodes[side].http_port}/", open_timeout=5),
    )


def test_modes_and_operators_across_real_nodes(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a", opers=opers()), cluster("b", opers=opers())
    modes_and_operators_across(on_nodes(a, b))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_users_across_real_nodes(
    cluster: Callable[..., SalonProcess], store: str, request: pytest.FixtureRequest
) -> None:
    """Issue 19 point 3 on real processes (nodehelpers.users_across), each node with its
    own SQLite store or both on one PostgreSQL."""
    sections: dict[str, Any] = {"opers": opers()}
    if store == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        sections["postgres"] = {"dsn": dsn, "retry_for": 5.0}
    users_across(on_nodes(cluster("a", **sections), cluster("b", **sections)))


def test_two_nodes_on_one_postgresql(
    cluster: Callable[..., SalonProcess], postgres_dsn: str
) -> None:
    """Both nodes on one PostgreSQL ([postgres]) and one Redis: CHATHISTORY and SEARCH on
    B of a message sent on A, each event stored once (by the node it was made on); an
    account registered on A logs in on B."""
    import base64

    import psycopg

    pg = {"postgres": {"dsn": postgres_dsn, "retry_for": 5.0}}
    a, b = cluster("a", **pg), cluster("b", **pg)
    caps = "message-tags server-time draft/chathistory batch soju.im/search"
    alice, bob = alice_and_bob(a, b, "#pg", caps)
    alice.send("PRIVMSG #pg :stored once in postgres")
    got = bob.expect(r"msgid=([^; ]+).* PRIVMSG #pg :stored once in postgres$")
    bob.send("CHATHISTORY LATEST #pg * 10")
    replayed = [m for m in bob.read_batch("chathistory") if m.command == "PRIVMSG"]
    assert [m.tags["msgid"] for m in replayed] == [got.group(1)]
    bob.send("SEARCH in=#pg;text=postgres")
    found = [m for m in bob.read_batch("soju.im/search") if m.command == "PRIVMSG"]
    assert [m.tags["msgid"] for m in found] == [got.group(1)]
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT command, count(*) FROM history WHERE target = '#pg' GROUP BY command"
        ).fetchall()
    assert dict(rows) == {"JOIN": 2, "PRIVMSG": 1}
    # An account registered on A logs in with SASL PLAIN on B.
    alice.send("REGISTER * * :correct horse battery")
    alice.expect(r"REGISTER SUCCESS")
    c = LineClient(b.irc_port)
    c.send("CAP REQ :sasl")
    c.send("AUTHENTICATE PLAIN")
    c.expect(r"AUTHENTICATE \+")
    plain = base64.b64encode(b"alice\0alice\0correct horse battery").decode()
    c.send("AUTHENTICATE " + plain)
    c.expect(r" 903 ")
