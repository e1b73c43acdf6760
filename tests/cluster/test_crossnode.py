"""Issue 19 point 3, in process (two cores on one MemoryBus): the behaviours that went
through state of their own besides the events (ChanServ's registrations, read markers,
redactions, draft/multiline batches, WHOIS idle, SCRAM logins, channel keys), checked
from both nodes."""

from __future__ import annotations

import base64

import pytest
from accounthelpers import PASSWORD, cheap_argon2, register_account, sasl_connect
from clusterhelpers import ClusterNet
from corehelpers import Conn, find, one

from salon.client.sasl import ScramSha256
from tests.server.test_events import state

__all__ = ["cheap_argon2"]


def cs(conn: Conn, text: str) -> list[str]:
    conn.send(f"CS {text}")
    return [m.params[-1] for m in conn.messages() if m.command == "NOTICE"]


def regs(net: ClusterNet, i: int) -> dict[str, tuple[str, list[tuple[str, str]], bool]]:
    chanserv = net[i].server.services.chanserv
    return {
        cf: (r.founder, sorted(r.access.items()), r.topiclock) for cf, r in chanserv.regs.items()
    }


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_chanserv_settings_made_on_one_node_hold_on_the_other(shared_store: bool) -> None:
    net = ClusterNet(2, shared_store=shared_store, accounts={"registration_throttle": 0})
    alice = register_account(net[0], "alice")
    register_account(net[1], "bob").send("QUIT")
    alice.send("JOIN #chan")
    alice.lines()
    assert cs(alice, "REGISTER #chan") == ["Channel #chan is now registered to alice"]
    assert cs(alice, "AMODE #chan +o bob") == ["#chan: +o bob"]
    assert cs(alice, "TOPICLOCK #chan ON") == ["Topic lock for #chan is on"]
    assert regs(net, 0) == regs(net, 1) == {"#chan": ("alice", [("bob", "o")], True)}
    # bob, logging in on B, is opped by ChanServ as he joins (his access, set on A).
    bob = sasl_connect(net[1], "bob", "bob")
    bob.send("JOIN #chan")
    assert ":ChanServ!ChanServ@test.salon MODE #chan +o bob" in bob.lines()
    # The topic lock, set on A, holds on B: an operator without access is refused.
    guest = net.register(1, "guest")
    guest.send("JOIN #chan")
    bob.send("MODE #chan +o guest")
    guest.lines()
    guest.send("TOPIC #chan :hijack")
    assert "locked" in one(guest.messages(), "482").params[-1]
    # ChanServ on B sees the registration: INFO, and AMODE by the founder's operator.
    assert cs(bob, "INFO #chan")[0].startswith("Channel #chan, founder alice")
    # A registered channel stays on both nodes when its last member leaves.
    for c in (alice, bob, guest):
        c.send("PART #chan")
    assert "#chan" in net[0].server.channels and "#chan" in net[1].server.channels
    assert state(net[0].server) == state(net[1].server)
    # Each store holds the registration once: its own node's, or the one they share.
    for node in net.nodes:
        assert node.store.channels["#chan"].access == (("bob", "o"),)
    # DROP on A: gone on B too, and the empty channel with it.
    alice.send("JOIN #chan")
    alice.lines()
    assert cs(alice, "DROP #chan") == ["Channel #chan is no longer registered"]
    assert regs(net, 1) == {}
    alice.send("PART #chan")
    assert "#chan" not in net[1].server.channels
    for node in net.nodes:
        assert "#chan" not in node.store.channels


def test_two_nodes_register_one_channel_at_once_one_founder() -> None:
    net = ClusterNet(2, accounts={"registration_throttle": 0})
    alice = register_account(net[0], "alice")
    bob = register_account(net[1], "bob")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.send("MODE #c +o bob")
    for c in (alice, bob):
        c.lines()
    with net.hold():
        alice.send("CS REGISTER #c")
        bob.send("CS REGISTER #c")
    net.release(order=[1, 0])
    assert [m.params[-1] for m in bob.messages()] == ["Channel #c is now registered to bob"]
    assert [m.params[-1] for m in alice.messages()] == ["That channel is already registered"]
    assert regs(net, 0) == regs(net, 1) == {"#c": ("bob", [], False)}


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_redact_reaches_the_other_node_and_its_history(shared_store: bool) -> None:
    net = ClusterNet(2, shared_store=shared_store)
    wanted = [
        "draft/message-redaction", "message-tags", "draft/chathistory", "batch",
        "echo-message", "server-time",
    ]  # fmt: skip
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    plain = net.register(1, "plain")
    for c in (alice, bob, plain):
        c.send("JOIN #c")
    for c in (alice, bob, plain):
        c.lines()
    alice.send("PRIVMSG #c :a slip")
    msgid = one(bob.messages(), "PRIVMSG").tags["msgid"]
    alice.lines()
    plain.lines()
    alice.send(f"REDACT #c {msgid} :oops")
    assert [m.params for m in find(alice.messages(), "REDACT")] == [("#c", msgid, "oops")]
    assert [m.params for m in find(bob.messages(), "REDACT")] == [("#c", msgid, "oops")]
    assert plain.lines() == []  # without the capability: nothing
    # Gone from B's store too (each node has its own).
    bob.send("CHATHISTORY LATEST #c * 10")
    assert find(bob.messages(), "PRIVMSG") == []
    # A private message, redacted by its author on B.
    bob.send("PRIVMSG alice :psst")
    dm = one(alice.messages(), "PRIVMSG").tags["msgid"]
    bob.lines()
    bob.send(f"REDACT alice {dm}")
    assert [m.params for m in find(alice.messages(), "REDACT")] == [("alice", dm)]
    alice.send("CHATHISTORY LATEST bob * 10")
    assert find(alice.messages(), "PRIVMSG") == []


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_markread_reaches_the_account_s_sessions_on_the_other_node(shared_store: bool) -> None:
    net = ClusterNet(2, shared_store=shared_store, accounts={"registration_throttle": 0})
    register_account(net[0], "alice").send("QUIT")
    wanted = "sasl draft/read-marker"
    here = sasl_connect(net[0], "alice", "alice", caps=wanted)
    there = sasl_connect(net[1], "alice2", "alice", caps=wanted)
    here.send("MARKREAD #c timestamp=2026-01-01T00:00:01.000Z")
    assert here.lines() == [":test.salon MARKREAD #c timestamp=2026-01-01T00:00:01.000Z"]
    assert there.lines() == [":test.salon MARKREAD #c timestamp=2026-01-01T00:00:01.000Z"]
    # Only forward, on both nodes: B's older marker changes nothing.
    there.send("MARKREAD #c timestamp=2025-01-01T00:00:00.000Z")
    assert there.lines() == [":test.salon MARKREAD #c timestamp=2026-01-01T00:00:01.000Z"]
    assert here.lines() == []
    there.send("MARKREAD #c")
    assert there.lines() == [":test.salon MARKREAD #c timestamp=2026-01-01T00:00:01.000Z"]
    assert net[0].server.read_markers == net[1].server.read_markers
    for node in net.nodes:
        assert node.store.load_read_markers() == [("~alice", "#c", 1767225601.0)]


def test_multiline_batches_cross_nodes() -> None:
    net = ClusterNet(2)
    wanted = ["draft/multiline", "batch", "message-tags", "echo-message", "draft/chathistory"]
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    old = net.register(1, "old")
    for c in (alice, bob, old):
        c.send("JOIN #c")
    for c in (alice, bob, old):
        c.lines()
    alice.send("BATCH +m1 draft/multiline #c")
    alice.send("@batch=m1 PRIVMSG #c :first line")
    alice.send("@batch=m1;draft/multiline-concat PRIVMSG #c :, continued")
    alice.send("BATCH -m1")
    echo = alice.messages()
    got = bob.messages()
    assert [m.command for m in got] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    assert [m.command for m in echo] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    assert got[0].tags["msgid"] == echo[0].tags["msgid"]
    assert [m.params[1] for m in got[1:3]] == ["first line", ", continued"]
    assert "draft/multiline-concat" in got[2].tags
    assert old.lines() == [
        ":alice!alice@127.0.0.1 PRIVMSG #c :first line",
        ":alice!alice@127.0.0.1 PRIVMSG #c :, continued",
    ]
    # In B's history, and a private batch from B to A.
    bob.send("CHATHISTORY LATEST #c * 10")
    assert [m.params[1] for m in find(bob.messages(), "PRIVMSG")] == ["first line", ", continued"]
    bob.send("BATCH +m2 draft/multiline alice")
    bob.send("@batch=m2 PRIVMSG alice :one")
    bob.send("@batch=m2 PRIVMSG alice :two")
    bob.send("BATCH -m2")
    assert [m.params[1] for m in find(alice.messages(), "PRIVMSG")] == ["one", "two"]


def test_whois_idle_of_a_user_on_the_other_node() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")
    net.advance(100)
    bob.send("WHOIS alice")
    idle = one(bob.messages(), "317")
    assert idle.params[2:4] == ("100", str(int(alice.client.created)))
    alice.send("PRIVMSG #c :awake")
    net.advance(30)
    for asker in (bob, net.register(0, "carol")):
        asker.send("WHOIS alice")
        assert one(asker.messages(), "317").params[2] == "30"


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_scram_on_one_node_for_an_account_registered_on_the_other(shared_store: bool) -> None:
    net = ClusterNet(2, shared_store=shared_store, accounts={"registration_throttle": 0})
    register_account(net[0], "alice")
    conn = net.connect(1)
    conn.send("CAP REQ :sasl")
    conn.send("NICK a2")
    conn.send("USER a2 0 * :a2")
    conn.send("AUTHENTICATE SCRAM-SHA-256")
    assert conn.lines()[-1] == ":test.salon AUTHENTICATE +"
    scram = ScramSha256("alice", PASSWORD)
    conn.send("AUTHENTICATE " + base64.b64encode(scram.client_first()).decode())
    first = one(conn.messages(), "AUTHENTICATE").params[0]
    final = scram.client_final(base64.b64decode(first))
    conn.send("AUTHENTICATE " + base64.b64encode(final).decode())
    verifier = one(conn.messages(), "AUTHENTICATE").params[0]
    scram.verify_server_final(base64.b64decode(verifier))
    conn.send("AUTHENTICATE +")
    assert conn.numerics() == ["900", "903"]
    conn.send("CAP END")
    assert "001" in conn.numerics()
    assert net[0].server.nicks["a2"].account == "alice"


def test_a_key_set_on_one_node_decides_a_racing_join_alike() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #k")
    alice.lines()
    # The key first: bob's JOIN without it is refused, on both nodes alike.
    with net.hold():
        alice.send("MODE #k +k secret")
        bob.send("JOIN #k")
    net.release(order=[0, 1])
    assert bob.numerics() == ["475"]
    assert state(net[0].server) == state(net[1].server)
    # The JOIN first: it is in, and the key comes after.
    alice.send("MODE #k -k *")
    with net.hold():
        alice.send("MODE #k +k other")
        bob.send("JOIN #k")
    net.release(order=[1, 0])
    assert bob.numerics() == ["JOIN", "353", "366", "MODE"]
    assert state(net[0].server) == state(net[1].server)
    # The right key, changed on A before the JOIN's turn: refused.
    bob.send("PART #k")
    with net.hold():
        alice.send("MODE #k +k newer")
        bob.send("JOIN #k other")
    net.release(order=[0, 1])
    assert bob.numerics()[-1] == "475"
    bob.send("JOIN #k newer")
    assert bob.numerics() == ["JOIN", "353", "366"]
    assert state(net[0].server) == state(net[1].server)
