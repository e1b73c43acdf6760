"""Issue 19 point 7 on real processes, what the restatement after Redis lost its data
must carry besides the users and channels (tests/cluster/test_redis_restart.py): each
``salon serve`` node has its own SQLite data directory, on a redis-server of the test's
own that comes back empty."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess, free_port

from tests.cluster.test_crossnode_loopback import (
    register_channel,
    scram_login,
    settings_hold,
    synced,
)
from tests.cluster.test_redis_restart import running_redis
from tests.nodehelpers import opers

pytestmark = pytest.mark.e2e

Start = Callable[..., SalonProcess]


@pytest.fixture
def empty_redis() -> Iterator[Any]:
    """A redis-server of this test alone, without persistence: it comes back empty."""
    yield from running_redis(False)


@pytest.fixture
def nodes(tmp_path: Path, empty_redis: Any) -> Iterator[Start]:
    started: list[SalonProcess] = []

    def factory(name: str, **sections: Any) -> SalonProcess:
        sub = tmp_path / f"{name}{len(started)}"
        sub.mkdir()
        cluster = {"redis": empty_redis.url, "node": name, "prefix": "p"}
        node = SalonProcess(
            sub,
            cluster=cluster,
            accounts={"registration_throttle": 0, **sections.pop("accounts", {})},
            opers=opers(),
            **sections,
        )
        started.append(node.start())
        return node

    yield factory
    for node in started:
        node.stop()


def restart_empty(redis: Any, *watchers: tuple[SalonProcess, LineClient]) -> None:
    """Stop Redis and start it again empty; return once every node restated (its log
    says so) and its PONG, which follows the round of restatements, came back."""
    redis.halt()
    redis.start(redis.port)
    for node, client in watchers:
        node.wait_log("Redis lost data", timeout=15)
        synced(client)


MARKER = "MARKREAD #reg timestamp=2026-01-01T00:00:01.000Z"


def make_records(node: SalonProcess, oper_node: SalonProcess) -> tuple[LineClient, LineClient]:
    """Accounts alice and bob, #reg registered with its settings (register_channel) and
    empty, a K-line set on ``oper_node``, alice's read marker of #reg (MARKER). Returns
    alice's client and the oper's, once ``node`` applied it all."""
    alice = register_channel(node, "#reg")
    alice.send("PART #reg")  # (an empty registered channel: no node lists it in its users')
    alice.expect(r" PART #reg")
    root = oper(oper_node, "root")
    root.send("KLINE *@10.9.9.9 :spam")
    root.expect(r"K-line added")
    reader = scram_login(node, "alice2", "alice", "draft/read-marker")
    reader.send(MARKER)
    reader.expect(MARKER)
    synced(alice)
    return alice, root


def records_hold(node: SalonProcess) -> None:
    """What make_records made holds on ``node``: SCRAM login, ChanServ INFO, the access
    list's op, the topic lock, MARKREAD, KLINE LIST."""
    settings_hold(node, "#reg")
    reader = scram_login(node, "alice3", "alice", "draft/read-marker")
    reader.send("MARKREAD #reg")
    reader.expect(MARKER)
    root = oper(node, "root2")
    root.send("KLINE LIST")
    root.expect(r"K-line \*@10\.9\.9\.9 ")


def oper(node: SalonProcess, nick: str) -> LineClient:
    c = LineClient(node.irc_port)
    c.register(nick)
    c.send("OPER root pw")
    c.expect(r" 381 ")
    return c


def test_a_node_started_after_redis_came_back_empty_knows_accounts_and_registrations(
    nodes: Start, empty_redis: Any
) -> None:
    """An account, a ChanServ registration with its settings (AMODE, TOPICLOCK), a
    K-line and a read marker made before Redis lost its data hold on a node started
    afterwards on a fresh data directory."""
    a, b = nodes("a"), nodes("b")
    alice, root = make_records(a, b)
    restart_empty(empty_redis, (a, alice), (b, root))
    records_hold(nodes("c"))


def test_a_node_keeps_the_records_it_replayed_after_the_log_lost_them(
    nodes: Start, empty_redis: Any
) -> None:
    """A node started on a fresh data directory learns another node's account, ChanServ
    registration, K-line and read marker from the log, and writes them to its own store:
    restarted once the log no longer carries them (trimmed), it still holds them."""
    import redis

    a = nodes("a")
    make_records(a, a)
    c = nodes("c")
    synced(oper(c, "probe"))
    c.stop()
    conn = redis.Redis.from_url(empty_redis.url, decode_responses=True)
    conn.xtrim("p:log", maxlen=0)  # (what a long-running network's log_maxlen does)
    c.start()
    records_hold(c)


def in_channel(node: SalonProcess, nick: str, chan: str = "#c") -> LineClient:
    c = LineClient(node.irc_port)
    c.register(nick)
    c.send(f"JOIN {chan}")
    c.expect(r" 366 ")
    return c


def pause_and_restart_empty(
    nodes: Start, redis_server: Any, late: bool
) -> tuple[dict[str, int], list[SalonProcess], LineClient, LineClient, LineClient | None]:
    """Nodes a and b, with alice and bob in #c, are paused; Redis comes back empty and a
    new node c starts first, drawing number 1 from the lost counter, which a holds. a
    and b wake as c has joined (``late``: once c has settled, with carol registered on
    it). The node numbers before, the nodes a, b and c, alice, bob and carol."""
    import redis

    a, b = nodes("a"), nodes("b")
    alice, bob = in_channel(a, "alice"), in_channel(b, "bob")
    conn = redis.Redis.from_url(redis_server.url, decode_responses=True)
    before = numbers(redis_server)
    assert sorted(before) == ["a", "b"]
    paused = [node.proc for node in (a, b)]
    carol = None
    for proc in paused:
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
    try:
        redis_server.halt()
        redis_server.start(redis_server.port)
        third: list[SalonProcess] = []
        starting = threading.Thread(target=lambda: third.append(nodes("c")), daemon=True)
        starting.start()
        deadline = time.monotonic() + 15
        while "c" not in conn.hgetall("p:nodes").values():
            assert time.monotonic() < deadline, "node c did not join"
            time.sleep(0.02)
        if late:
            starting.join(15)
            carol = LineClient(third[0].irc_port)
            carol.register("carol")
    finally:
        for proc in paused:
            assert proc is not None
            proc.send_signal(signal.SIGCONT)
        conn.close()
    starting.join(15)
    return before, [a, b, third[0]], alice, bob, carol


def numbers(redis_server: Any) -> dict[str, int]:
    import redis

    with redis.Redis.from_url(redis_server.url, decode_responses=True) as conn:
        return {name: int(number) for number, name in conn.hgetall("p:nodes").items()}


def test_a_node_started_on_the_empty_redis_before_the_others_came_back_takes_a_free_number(
    nodes: Start, empty_redis: Any
) -> None:
    """Redis comes back empty while the running nodes are paused, and a new node starts
    first: it draws number 1 from the lost counter, which node a holds. Node a, woken
    within the new node's SETTLE_FOR, takes its number again; the new node draws
    another, and the three nodes see each other's users."""
    before, (a, b, c_node), alice, bob, _carol = pause_and_restart_empty(
        nodes, empty_redis, late=False
    )
    for node, client in ((a, alice), (b, bob)):
        node.wait_log("Redis lost data", timeout=15)
        synced(client)
    after = numbers(empty_redis)
    print(f"node numbers before {before}, after {after}")
    assert sorted(after) == ["a", "b", "c"], "two nodes hold one number"
    assert after["a"] == before["a"] and after["b"] == before["b"]
    assert after["c"] not in before.values()
    assert "drawing again" in c_node.log()
    # Every node sees every other's users; a nick held elsewhere is refused.
    carol = LineClient(c_node.irc_port)
    carol.register("carol")
    carol.send("JOIN #c")
    carol.expect(r" 366 ")
    for c in (alice, bob):
        c.expect(r"^:carol!\S+ JOIN #c")
        c.send("WHOIS carol")
        c.expect(r" 311 \S+ carol ")
    carol.send("NAMES #c")
    listed = carol.expect(r" 353 carol = #c :(.*)$").group(1)
    assert sorted(n.lstrip("@") for n in listed.split()) == ["alice", "bob", "carol"]
    carol.send("NICK alice")
    carol.expect(r" 433 carol alice ")


def test_a_node_back_after_the_new_one_settled_takes_its_number_back(
    nodes: Start, empty_redis: Any
) -> None:
    """As above, but a and b wake only after c has settled on number 1 and let carol
    in: a takes its number back (it has users every replica knows under it), and c,
    whose turns and heartbeats Redis now refuses, closes its clients with ERROR and exits
    3 (started again, it draws a free number). At no time do two nodes add entries
    under one number."""
    before, (a, b, c_node), alice, bob, carol = pause_and_restart_empty(
        nodes, empty_redis, late=True
    )
    assert carol is not None
    carol.expect(r"^ERROR :Closing Link: node lost its place in the network", timeout=15)
    assert c_node.proc is not None and c_node.proc.wait(15) == 3
    assert "another node took its number" in c_node.log()
    for node, client in ((a, alice), (b, bob)):
        node.wait_log("Redis lost data", timeout=15)
        synced(client)
    assert numbers(empty_redis) == before
    bob.send("WHOIS alice")
    bob.expect(r" 311 bob alice ")
    alice.send("PRIVMSG #c :still here")
    bob.expect(r"^:alice!\S+ PRIVMSG #c :still here$")


def test_a_kick_the_kicked_users_node_had_not_read_holds(nodes: Start, empty_redis: Any) -> None:
    """Redis loses its data after node a read alice's KICK of bob and before bob's node
    b did (b paused meanwhile). b restates bob in #c, but a's restatement, which read
    further, decides: bob is told he is out (a KICK by ChanServ), and NAMES is the same on
    both nodes, without him."""
    a, b = nodes("a"), nodes("b")
    alice = in_channel(a, "alice")
    bob, carol = in_channel(b, "bob"), in_channel(b, "carol")
    synced(alice)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)
    try:
        alice.send("KICK #c bob :out")
        alice.expect(r"^:alice!\S+ KICK #c bob :?out$")
        empty_redis.halt()
        empty_redis.start(empty_redis.port)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    for node, client in ((a, alice), (b, carol)):
        node.wait_log("Redis lost data", timeout=15)
        synced(client)
    bob.expect(r" KICK #c bob ")
    for c in (alice, carol):
        c.send("NAMES #c")
        listed = c.expect(r" 353 \S+ = #c :(.*)$").group(1)
        assert sorted(n.lstrip("@") for n in listed.split()) == ["alice", "carol"]


def test_a_node_started_after_redis_came_back_empty_serves_the_files(
    nodes: Start, empty_redis: Any, tmp_path: Path
) -> None:
    """The file host's records and references, like the accounts, reach a node started
    after Redis came back empty on a fresh data directory (the blobs are in the directory
    the nodes share): its owner, and a member of the +s channel it was posted in, read a
    file uploaded before; nobody else does."""
    from filehelpers import account, basic, path_of, request, upload

    blobs = tmp_path / "shared-files"

    def with_files(name: str) -> SalonProcess:
        port = free_port()
        files = {"public_url": f"http://127.0.0.1:{port}", "min_free": 0, "dir": str(blobs)}
        accounts = {"password_min_length": 4}  # (filehelpers' password)
        return nodes(name, listen={"http_port": port}, files=files, accounts=accounts)

    a, b = with_files("a"), with_files("b")
    alice = account(LineClient, a, "alice", "#secret")
    alice.send("MODE #secret +s")
    alice.expect(r"MODE #secret \+s")
    bob = account(LineClient, b, "bob", "#secret")
    data = b"plans made before the restart\n"
    up = upload(a, data, "plans.txt", basic("alice"))
    assert up.status == 201, up.body
    url = up.header("Location")
    alice.send(f"PRIVMSG #secret :look {url}")
    bob.expect(re.escape(url))
    synced(alice)
    restart_empty(empty_redis, (a, alice), (b, bob))
    c = with_files("c")
    path = path_of(url)
    assert request(c, "GET", path).status == 401
    for who in ("alice", "bob"):
        got = request(c, "GET", path, headers=basic(who))
        assert (got.status, got.body) == (200, data), who
    account(LineClient, c, "carol")
    assert request(c, "GET", path, headers=basic("carol")).status == 403
