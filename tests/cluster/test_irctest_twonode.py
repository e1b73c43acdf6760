"""Cross-node failures that irctest's two-node mode found (scripts/irctest.sh with
SALON_IRCTEST_NODES=2, docs/CONFORMANCE.md), each reproduced in process on the memory bus."""

from __future__ import annotations

from typing import Any

from clusterhelpers import ClusterNet
from corehelpers import one

from salon.server.effects import Effect, StoreCall


def test_lusers_max_counts_the_peak_of_users_on_the_other_node() -> None:
    """irctest lusers.py testLusersFull: bar on A, qux on B asks LUSERS with 2 users,
    quits, and bar's LUSERS must say max 2, not the 1 that A last counted itself."""
    net = ClusterNet(2)
    bar = net.register(0, "bar")
    qux = net.register(1, "qux")
    qux.send("QUIT")
    bar.send("LUSERS")
    msgs = bar.messages()
    assert one(msgs, "265").params[1:3] == ("1", "2")
    assert one(msgs, "266").params[1:3] == ("1", "2")


def test_a_pong_follows_what_the_other_node_had_before_the_ping() -> None:
    """irctest websocket testSendTruncation and others: bob on B sends, alice on A sends a
    PING at once; her PONG must come after bob's message even when her PING's fence is
    ordered before it, since B had the message first: B acknowledges the fence only after
    sending what it had."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    with net.hold():
        bob.send("PRIVMSG alice :hello")
        alice.send("PING sync")
    net.release(order=[0, 1])  # alice's fence first in the order, then bob's message
    assert [line.split(" ", 2)[1] for line in alice.lines()] == ["PRIVMSG", "PONG"]


def test_a_pong_waits_for_every_node_but_not_for_a_dead_one() -> None:
    net = ClusterNet(3)
    alice = net.register(0, "alice")
    net.register(1, "bob")
    net.register(2, "carol")
    with net.hold():
        alice.send("PING one")
    net.nodes[2].alive = False  # carol's node reads nothing more and acknowledges nothing
    net.release()
    assert alice.lines() == []
    net.kill(2)  # declared dead: the PONG waits no more for it
    assert [line.split(" ", 2)[1] for line in alice.lines()] == ["PONG"]


def test_a_state_change_synced_on_one_node_is_seen_by_the_next_command_on_the_other() -> None:
    """irctest chmodes limit testLimitRemoval: MODE -l on A, PING/PONG on A, then a JOIN
    on B must not be refused by B's replica from before the MODE."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")
    alice.send("MODE #c +l 1")
    alice.lines()
    with net.hold():
        alice.send("MODE #c -l")
        alice.send("PING sync")
    # Node B reads the order only when the test lets it (the other node is a turn behind).
    b = net.nodes[1]
    b.alive = False
    net.release()
    assert [line.split(" ", 2)[1] for line in alice.lines()] == ["MODE"]  # no PONG yet
    b.alive = True
    net.pump()
    assert [line.split(" ", 2)[1] for line in alice.lines()] == ["PONG"]
    bob.send("JOIN #c")
    assert bob.numerics()[0] == "JOIN"


def test_lusers_counts_the_unregistered_connections_of_every_node() -> None:
    """irctest lusers.py LusersUnregisteredTestCase: qux connects to B and stays
    unregistered; bar's LUSERS on A counts it (253), and no longer once it registered."""
    net = ClusterNet(2)
    bar = net.register(0, "bar")
    qux = net.connect(1)
    qux.send("NICK qux")
    bar.send("LUSERS")
    msgs = bar.messages()
    assert one(msgs, "253").params[1] == "1"
    assert one(msgs, "266").params[1] == "1"
    qux.send("USER u s e r")
    assert "001" in qux.numerics()
    bar.send("LUSERS")
    msgs = bar.messages()
    assert one(msgs, "253").params[1] == "0"
    assert one(msgs, "266").params[1] == "2"


def test_a_query_waits_until_its_node_applied_what_another_node_answered() -> None:
    """irctest away.py testAway: bob's AWAY was answered on B while A had not read it yet;
    alice's WHOIS on A must still show it (a read fence)."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    a = net.nodes[0]
    a.alive = False  # A is a turn behind: it has not read bob's AWAY yet
    bob.send("AWAY :gone fishing")
    assert bob.numerics() == ["306"]
    a.alive = True
    alice.send("WHOIS bob")
    assert one(alice.messages(), "301").params[-1] == "gone fishing"


def test_a_fence_that_waited_for_a_commit_is_not_taken_for_a_repeat() -> None:
    """A PING's fence waits for the commit of a message sent before it on its node (carol's);
    an event sent meanwhile (dave's JOIN) must not leave the fence behind with a lower token,
    which every node would drop as a repeat (and the PONG would never come)."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    carol = net.register(0, "carol")
    dave = net.register(0, "dave")
    a = net.nodes[0]
    held: list[StoreCall[Any]] = []
    take = a.server.take_effects

    def holding_store_calls() -> list[Effect]:
        effects = take()
        held.extend(e for e in effects if isinstance(e, StoreCall))
        return [e for e in effects if not isinstance(e, StoreCall)]

    a.server.take_effects = holding_store_calls  # type: ignore[method-assign]
    carol.send("PRIVMSG bob :first")
    alice.send("PING sync")
    dave.send("JOIN #x")
    assert alice.lines() == []
    a.server.take_effects = take  # type: ignore[method-assign]
    for call in held:
        a.server.complete_store(call, call.call(a.store), a.now)
    a.collect_effects()
    assert bob.lines() == [":carol!carol@127.0.0.1 PRIVMSG bob first"]
    assert [line.split(" ", 2)[1] for line in alice.lines()] == ["PONG"]
