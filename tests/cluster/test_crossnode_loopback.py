"""Issue 19 point 3 on real processes (two ``salon serve`` nodes on a real redis-server,
each with its own SQLite store, or both on one PostgreSQL): ChanServ settings, REDACT,
MARKREAD, draft/multiline, WHOIS idle, SASL SCRAM and channel keys across nodes."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LineClient, SalonProcess

from salon.client.sasl import ScramSha256
from salon.proto.message import parse
from tests.cluster.test_loopback import client, cluster

pytestmark = pytest.mark.e2e

__all__ = ["cluster"]

PASSWORD = "correct horse battery"
NO_THROTTLE = {"accounts": {"registration_throttle": 0}}


def register_account(node: SalonProcess, nick: str, caps: str = "") -> LineClient:
    c = client(node, nick, caps)
    c.send(f"REGISTER * * :{PASSWORD}")
    c.expect(r"REGISTER SUCCESS")
    return c


def scram_login(node: SalonProcess, nick: str, account: str, caps: str = "") -> LineClient:
    """Connect, log in to ``account`` with SASL SCRAM-SHA-256 (the server's signature
    checked), and register as ``nick``."""
    c = LineClient(node.irc_port)
    c.send("CAP LS 302")
    c.send(f"CAP REQ :{' '.join(['sasl', *caps.split()])}")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick}")
    c.send("AUTHENTICATE SCRAM-SHA-256")
    c.expect(r"^AUTHENTICATE \+$|^:\S+ AUTHENTICATE \+$")
    scram = ScramSha256(account, PASSWORD)
    c.send("AUTHENTICATE " + base64.b64encode(scram.client_first()).decode())
    first = c.expect(r"AUTHENTICATE (\S+)$").group(1)
    c.send("AUTHENTICATE " + base64.b64encode(scram.client_final(base64.b64decode(first))).decode())
    verifier = c.expect(r"AUTHENTICATE (\S+)$").group(1)
    scram.verify_server_final(base64.b64decode(verifier))
    c.send("AUTHENTICATE +")
    c.expect(r" 903 ")
    c.send("CAP END")
    c.expect(r" 001 ")
    c.expect(r" (376|422) ")
    return c


def cs(c: LineClient, text: str) -> str:
    c.send(f"CS {text}")
    return c.expect(r"^:ChanServ!\S+ NOTICE \S+ :(.*)$").group(1)


def synced(c: LineClient) -> None:
    """Wait until ``c``'s node applied everything the network ordered before now (its
    PONG waits for that), reading what came before."""
    c.send("PING :sync")
    c.expect(r" PONG \S+ :?sync$")


def register_channel(node: SalonProcess, chan: str) -> LineClient:
    """On ``node``: accounts alice and bob; alice registers ``chan`` with ChanServ, gives
    bob access +o and locks the topic. Returns alice's client, still in ``chan``."""
    alice = register_account(node, "alice")
    register_account(node, "bob").send("QUIT")
    alice.send(f"JOIN {chan}")
    alice.expect(r" 366 ")
    assert cs(alice, f"REGISTER {chan}") == f"Channel {chan} is now registered to alice"
    assert cs(alice, f"AMODE {chan} +o bob") == f"{chan}: +o bob"
    assert cs(alice, f"TOPICLOCK {chan} ON") == f"Topic lock for {chan} is on"
    return alice


def settings_hold(node: SalonProcess, chan: str) -> tuple[LineClient, LineClient]:
    """On ``node``, what :func:`register_channel` set holds: bob logs in with SCRAM and is
    opped by ChanServ as he joins; guest, opped by bob, may not change the locked topic;
    ChanServ INFO names the founder. Returns bob's and guest's clients, in ``chan``."""
    bob = scram_login(node, "bob", "bob")
    bob.send(f"JOIN {chan}")
    bob.expect(rf"^:ChanServ!\S+ MODE {chan} \+o bob$")
    guest = client(node, "guest")
    guest.send(f"JOIN {chan}")
    guest.expect(r" 366 ")
    bob.send(f"MODE {chan} +o guest")
    guest.expect(rf" MODE {chan} \+o guest$")
    guest.send(f"TOPIC {chan} :hijack")
    guest.expect(rf" 482 guest {chan} :The topic is locked")
    assert cs(bob, f"INFO {chan}").startswith(f"Channel {chan}, founder alice")
    return bob, guest


def test_chanserv_and_scram_across_nodes_on_one_postgresql(
    cluster: Callable[..., SalonProcess], postgres_dsn: str
) -> None:
    """ChanServ REGISTER, AMODE and TOPICLOCK on A hold on B; an account REGISTERed on A
    logs in with SCRAM on B; a registered channel emptied stays on both nodes."""
    import psycopg

    pg = {"postgres": {"dsn": postgres_dsn, "retry_for": 5.0}, **NO_THROTTLE}
    a, b = cluster("a", **pg), cluster("b", **pg)
    alice = register_channel(a, "#chan")
    bob, guest = settings_hold(b, "#chan")
    for c in (alice, bob, guest):
        c.send("PART #chan")
        c.expect(r" PART #chan")
    synced(bob)
    bob.send("LIST #chan")
    bob.expect(r" 322 bob #chan 0 ")
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT name_cf, record FROM channels").fetchall()
    assert [(cf, record["topiclock"], record["access"]) for cf, record in rows] == [
        ("#chan", True, [["bob", "o"]])
    ]
    # DROP on A: gone on B.
    assert cs(alice, "DROP #chan") == "Channel #chan is no longer registered"
    synced(bob)
    assert cs(bob, "INFO #chan") == "#chan is not registered"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_redact_markread_multiline_across_real_nodes(
    cluster: Callable[..., SalonProcess], store: str, request: pytest.FixtureRequest
) -> None:
    """Each node with its own SQLite store, or both on one PostgreSQL: a REDACT on A
    reaches B's clients and B's history; a MARKREAD on A reaches the account's session on
    B; a draft/multiline batch from A arrives whole on B and in B's history; SCRAM on B
    for an account of A."""
    sections: dict[str, Any] = dict(NO_THROTTLE)
    if store == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        sections["postgres"] = {"dsn": dsn, "retry_for": 5.0}
    a, b = cluster("a", **sections), cluster("b", **sections)
    caps = (
        "draft/message-redaction message-tags server-time echo-message draft/chathistory "
        "batch draft/multiline draft/read-marker"
    )
    alice = register_account(a, "alice", caps)
    bob = client(b, "bob", caps)
    for c in (alice, bob):
        c.send("JOIN #c")
        c.expect(r" 366 ")
    synced(alice)
    # REDACT
    alice.send("PRIVMSG #c :a slip")
    msgid = bob.expect(r"msgid=([^; ]+).* PRIVMSG #c :a slip$").group(1)
    alice.expect(r" PRIVMSG #c :a slip$")
    alice.send(f"REDACT #c {msgid} :oops, sorry")
    alice.expect(rf" REDACT #c {msgid} :oops, sorry$")
    bob.expect(rf"^\S+ :alice!\S+ REDACT #c {msgid} :oops, sorry$")
    bob.send("CHATHISTORY LATEST #c * 10")
    assert [m for m in bob.read_batch("chathistory") if m.command == "PRIVMSG"] == []
    # MARKREAD: alice's second session, on B, logged in with SCRAM.
    other = scram_login(b, "alice2", "alice", "draft/read-marker")
    alice.send("MARKREAD #c timestamp=2026-01-01T00:00:01.000Z")
    alice.expect(r" MARKREAD #c timestamp=2026-01-01T00:00:01\.000Z$")
    other.expect(r"^:\S+ MARKREAD #c timestamp=2026-01-01T00:00:01\.000Z$")
    other.send("MARKREAD #c timestamp=2025-01-01T00:00:00.000Z")
    other.expect(r" MARKREAD #c timestamp=2026-01-01T00:00:01\.000Z$")  # only forward
    # draft/multiline
    alice.send("BATCH +m1 draft/multiline #c")
    alice.send("@batch=m1 PRIVMSG #c :first line")
    alice.send("@batch=m1;draft/multiline-concat PRIVMSG #c :, continued")
    alice.send("BATCH -m1")
    opened = parse(bob.expect(r" BATCH \+\S+ draft/multiline #c$").string)
    lines = [parse(bob.readline()) for _ in range(3)]
    assert [m.params[-1] for m in lines] == [
        "first line",
        ", continued",
        "-" + opened.params[0][1:],
    ]
    assert "draft/multiline-concat" in lines[1].tags
    echoed = parse(alice.expect(r" BATCH \+\S+ draft/multiline #c$").string)
    assert echoed.tags["msgid"] == opened.tags["msgid"]
    bob.send("CHATHISTORY LATEST #c * 10")
    stored = [m.params[1] for m in bob.read_batch("chathistory") if m.command == "PRIVMSG"]
    assert stored == ["first line", ", continued"]


def test_whois_idle_of_a_user_on_the_other_node(cluster: Callable[..., SalonProcess]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = client(a, "alice")
    bob = client(b, "bob")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    bob.expect(r" 366 ")
    time.sleep(2.5)
    spoke = time.time()
    alice.send("PRIVMSG #c :awake now")
    bob.expect(r"PRIVMSG #c :awake now$")
    time.sleep(1.2)
    bob.send("WHOIS alice")
    found = bob.expect(r" 317 bob alice (\d+) (\d+) :")
    idle, signon = int(found.group(1)), int(found.group(2))
    # Counted from the message, not from the sign-on (at least 2.5 s before it).
    assert 1 <= idle <= time.time() - spoke + 1
    assert signon <= spoke - 2


def test_a_key_set_on_one_node_decides_a_racing_join_in_its_turn(
    cluster: Callable[..., SalonProcess],
) -> None:
    """MODE +k on A and a JOIN without the key on B, sent at once: the JOIN is refused
    exactly when the key was ordered before it, as alice (on A) sees the order."""
    a, b = cluster("a"), cluster("b")
    alice = client(a, "alice")
    bob = client(b, "bob")
    alice.send("JOIN #k")
    alice.expect(r" 366 ")
    synced(bob)
    outcomes = []
    for r in range(30):
        alice.send(f"MODE #k +k key{r}")
        bob.send("JOIN #k")
        line = bob.expect(r" 475 bob #k | 366 bob #k ").string
        joined = " 366 " in line
        # alice's lines come in the network's order: her MODE, and bob's JOIN if any.
        seen = []
        while len(seen) < 1 + joined:
            seen.append(alice.expect(r"^:(alice!\S+ MODE #k \+k|bob!\S+ JOIN #k)").group(1))
        assert joined == seen[0].startswith("bob"), (r, line, seen)
        outcomes.append(joined)
        if joined:
            bob.send("PART #k")
            alice.expect(r"^:bob!\S+ PART #k")
        alice.send("MODE #k -k *")
        alice.expect(r" MODE #k -k")
        synced(bob)
    print(f"+k race: the JOIN first in {sum(outcomes)} of {len(outcomes)} rounds")


def test_a_node_refuses_a_log_trimmed_past_what_the_network_holds(
    cluster: Callable[..., SalonProcess],
) -> None:
    """Issue 19 point 11: with ``log_maxlen`` too short for alice (connected since before
    the log's oldest entry), a starting node stops with one line instead of rebuilding a
    network without her; once she and the others of that time have gone, a node starts."""
    short = {"cluster": {"log_maxlen": 1000}}
    a = cluster("a", **short)
    alice = client(a, "alice")
    alice.send("JOIN #old")
    alice.expect(r" 366 ")
    talker = client(a, "talker")
    talker.send("JOIN #spam")
    talker.expect(r" 366 ")
    # (one log entry per turn: each line waits for its PONG, so each is a turn or two)
    for i in range(700):
        talker.send(f"PRIVMSG #spam :line {i}")
        synced(talker)
    time.sleep(1.6)  # a heartbeat reports what A's replica holds
    with pytest.raises(RuntimeError, match="no longer reaches back to what the running nodes"):
        cluster("b", **short)
    for c in (alice, talker):
        c.send("QUIT")
        c.expect(r"^ERROR ")
    carol = client(a, "carol")
    carol.send("JOIN #new")
    carol.expect(r" 366 ")
    time.sleep(1.6)
    b = cluster("b2", **short)
    bob = client(b, "bob")
    bob.send("WHOIS carol")
    bob.expect(r" 319 bob carol :?@#new")
    bob.send("WHOIS alice")
    bob.expect(r" 401 bob alice ")
