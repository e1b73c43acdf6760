"""Issue 19 point 7, in process: Redis lost the log (restarted without persistence, or from
an old snapshot). The nodes send again their recent entries, which every node applies
once, then restate their users and channels (salon.server.cluster's ``S`` entry), so
that every replica, and a node that starts afterwards and replays the log, holds the
network again. And while Redis is away, a node's waiting entries have a bound."""

from __future__ import annotations

from typing import Any

import pytest
from accounthelpers import cheap_argon2, register_account, sasl_connect
from clusterhelpers import ClusterNet, Node

from salon.passwords import hash_password
from salon.server.cluster import entry_origin
from salon.store.base import FileRecord
from tests.server.test_events import state

__all__ = ["cheap_argon2"]


def lose(net: ClusterNet, keep: int = 0) -> tuple[list[str], dict[int, str]]:
    """Redis comes back with only the first ``keep`` entries of the log (none: it was
    empty); every node reads on from there. The lost entries, and how far each node
    had read (as a log id), are returned."""
    lost = net.bus.log[keep:]
    read = {node.number: f"{node.seen}-0" for node in net.nodes}
    net.bus.log = net.bus.log[:keep]
    for node in net.nodes:
        node.seen = min(node.seen, keep)
    return lost, read


def recover(
    net: ClusterNet,
    lost: tuple[list[str], dict[int, str]],
    resend: bool = True,
    order: list[int] | None = None,
    run: str = "",
    restating: list[int] | None = None,
) -> None:
    """What each node's bus does once Redis answers again after losing data: it sends
    first what Cluster.recover gives for its own lost entries (``resend`` False: the
    bus no longer had them), and the rest once every node has restated; then what
    waited meanwhile. ``order``: the node numbers in the order their entries go first;
    ``run``: what names Redis's new data (the bus's run); ``restating``: the numbers of
    the nodes that had been running (all unless given)."""
    entries, read = lost
    later: list[str] = []
    for node in sorted(net.nodes, key=lambda n: order.index(n.number)) if order else net.nodes:
        if restating is not None and node.number not in restating:
            continue
        cluster = node.server.cluster
        assert cluster is not None
        mine = [e for e in entries if entry_origin(e) == node.number] if resend else []
        first, after = cluster.recover(mine, read[node.number], run)
        net.bus.append(first)
        later += after
    with net.hold():  # (every node reads the log; what nodes make meanwhile waits)
        while any([node.receive() for node in net.nodes]):
            pass
    for node in net.nodes:
        assert node.server.cluster is not None and node.server.cluster.round_done()
    net.bus.append(later)
    net.pump()


def start_node(net: ClusterNet, number: int) -> Node:
    """A node that starts now: it replays the whole log."""
    node = Node(net, number, None)
    net.nodes.append(node)
    net.pump()
    return node


def test_a_node_started_after_redis_came_back_empty_holds_the_network() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.send("MODE #c +ntk-t sesame")
    alice.send("MODE #c +v bob")
    alice.send("MODE #c +b evil!*@*")
    alice.send("TOPIC #c :before the restart")
    bob.send("AWAY :lunch")
    bob.send("JOIN #b")
    before = state(net[0].server)
    assert before == state(net[1].server)
    recover(net, lose(net))
    assert state(net[0].server) == state(net[1].server) == before
    third = start_node(net, 3)
    assert state(third.server) == before
    carol = net.register(2, "carol")
    carol.send("NAMES #c")
    assert any(" 353 carol = #c :@alice +bob" in line for line in carol.lines())


def test_entries_sent_again_are_applied_once() -> None:
    net = ClusterNet(2)
    wanted = ["message-tags", "echo-message"]
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    for c in (alice, bob):
        c.send("JOIN #c")
    for c in (alice, bob):
        c.lines()
    mark = len(net.bus.log)
    alice.send("PRIVMSG #c :once")
    bob.send("PRIVMSG #c :and once")
    assert len(bob.lines()) == 2
    assert len(alice.lines()) == 2
    # Redis kept everything, but the turn's answer was lost: the bus sends it again.
    net.bus.append(net.bus.log[mark:])
    net.pump()
    assert bob.lines() == [] and alice.lines() == []
    recover(net, lose(net, mark))
    assert bob.lines() == [] and alice.lines() == []
    assert state(net[0].server) == state(net[1].server)


def test_what_one_node_missed_of_the_lost_log_reaches_it_once() -> None:
    """Redis went away after node 0 read the last entries and before node 1 did; it
    came back without them. Node 1 gets the message once, the changes take effect
    there too, and both replicas end equal."""
    net = ClusterNet(2)
    alice = net.register(0, "alice", caps=["echo-message"])
    bob = net.register(1, "bob")
    gone = net.register(0, "gone")
    for c in (alice, bob, gone):
        c.send("JOIN #c")
    for c in (alice, bob, gone):
        c.lines()
    mark = len(net.bus.log)
    net[1].alive = False  # (reads nothing for now)
    alice.send("PRIVMSG #c :seen by node 0 only")
    alice.send("JOIN #new")
    alice.send("TOPIC #c :new topic")
    gone.send("QUIT :bye")
    assert "gone" not in net.users(0)
    lost = lose(net, mark)
    net[1].alive = True
    assert "gone" in net.users(1) and not bob.lines()
    recover(net, lost)
    got = bob.lines()
    assert [line for line in got if "PRIVMSG" in line] == [
        ":alice!alice@127.0.0.1 PRIVMSG #c :seen by node 0 only"
    ]
    assert "gone" not in net.users(1)
    # (node 0 had read further: its topic holds on both)
    assert state(net[0].server) == state(net[1].server)
    assert net[1].server.channels["#c"].topic == "new topic"


def test_a_restatement_quits_users_the_node_no_longer_has() -> None:
    """Without the entries sent again (older than the bus keeps them), the restatement
    alone makes the replicas equal: a user gone meanwhile quits."""
    net = ClusterNet(2)
    net.register(0, "alice")
    bob = net.register(1, "bob")
    ghost = net.register(0, "ghost")
    for c in (bob, ghost):
        c.send("JOIN #c")
    bob.lines()
    mark = len(net.bus.log)
    net[1].alive = False
    ghost.send("QUIT :bye")
    lost = lose(net, mark)
    net[1].alive = True
    assert "ghost" in net.users(1)
    recover(net, lost, resend=False)
    assert "ghost" not in net.users(1)
    assert [line for line in bob.lines() if " QUIT " in line] == [
        ":ghost!ghost@127.0.0.1 QUIT :*.net *.split"
    ]
    assert state(net[0].server) == state(net[1].server)


def test_a_node_refuses_changes_beyond_max_waiting() -> None:
    """While Redis is away a node's entries wait; past ``max_waiting`` a change or a
    message is refused at once with FAIL, and a PING still waits for its PONG."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
    for c in (alice, bob):
        c.lines()
    cluster = net[0].server.cluster
    assert cluster is not None
    cluster.max_waiting = 3
    with net.hold():
        for i in range(3):
            alice.send(f"PRIVMSG #c :m{i}")
        alice.send("PRIVMSG #c :one too many")
        alice.send("TOPIC #c :too")
        assert alice.lines() == [
            ":test.salon FAIL PRIVMSG TEMPORARILY_UNAVAILABLE :The network is unavailable; "
            "try again later",
            ":test.salon FAIL TOPIC TEMPORARILY_UNAVAILABLE :The network is unavailable; "
            "try again later",
        ]
    net.release()
    assert [line.split()[-1].lstrip(":") for line in bob.lines()] == ["m0", "m1", "m2"]
    alice.send("PRIVMSG #c :after")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c after"]


def test_a_change_its_node_had_not_read_back_gets_its_answer() -> None:
    """Node 1 read alice's TOPIC, node 0 (hers) had not yet when Redis lost it: after
    the round of restatements it is applied again, alice gets her answer, and both
    replicas end alike."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
    for c in (alice, bob):
        c.lines()
    mark = len(net.bus.log)
    with net.hold():
        alice.send("TOPIC #c :read by node 1 only")
        for op in net[0].queued:
            net.bus.append(op.entries)
        net[0].queued = []
        net[1].receive()
    assert alice.lines() == []
    assert bob.lines() == [":alice!alice@127.0.0.1 TOPIC #c :read by node 1 only"]
    assert net[0].server.channels["#c"].topic == ""
    recover(net, lose(net, mark))
    assert alice.lines() == [":alice!alice@127.0.0.1 TOPIC #c :read by node 1 only"]
    assert state(net[0].server) == state(net[1].server)
    assert net[0].server.channels["#c"].topic == "read by node 1 only"


def test_changes_made_while_redis_was_away_follow_the_restatements() -> None:
    """What waited during the outage goes after every restatement: none undoes it."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
    for c in (alice, bob):
        c.lines()
    lost = lose(net, len(net.bus.log))
    with net.hold():
        alice.send("TOPIC #c :while Redis was away")
        alice.send("MODE #c +v bob")
        bob.send("JOIN #d")
        recover(net, lost)
    net.release()
    for node in net.nodes:
        assert node.server.channels["#c"].topic == "while Redis was away"
    assert state(net[0].server) == state(net[1].server)
    assert start_node(net, 3).server.channels["#c"].topic == "while Redis was away"


def test_a_later_node_gives_each_member_the_status_its_node_stated() -> None:
    """The restatement of the node that had read less comes first and makes the channel
    on a node started afterwards; the founder's, which comes later, is not the furthest
    read: the founder keeps @ there all the same."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.send("MODE #c +v bob")
    before = state(net[0].server)
    entries, read = lose(net)
    read[1] = "1-0"  # (node 1, alice's, had read less)
    recover(net, (entries, read), order=[2, 1])
    assert state(start_node(net, 3).server) == before == state(net[1].server)


def stores_hold(node: Node) -> tuple[Any, ...]:
    """The accounts, registered channels (founder, topic lock), K-lines, account
    metadata, read markers and channels to rejoin of a node's replica, checked equal to
    what its own store holds (but the metadata: only the node of the session that set a
    key stores it)."""
    server = node.server
    accounts = sorted(server.accounts.records)
    regs = {cf: (r.founder, r.topiclock) for cf, r in server.services.chanserv.regs.items()}
    klines = sorted(server.abuse.klines)
    metadata = {a: keys for a, keys in server.account_metadata.items() if keys}
    files = {i: r.deleted for i, r in server.files.records.items()}
    store = node.store
    assert {i: r.deleted for i, r in store.files.items()} == files
    assert sorted(store.accounts) == accounts
    assert {cf: (r.founder, r.topiclock) for cf, r in store.channels.items()} == regs
    assert sorted(b.mask for b in store.bans.values()) == klines
    assert store.markers == server.read_markers
    assert store.rejoins == server.rejoin
    return accounts, regs, klines, metadata, server.read_markers, server.rejoin, files


def test_a_node_started_after_redis_came_back_empty_knows_accounts_and_registrations() -> None:
    """Each node with a store of its own: accounts, ChanServ registrations (with their
    settings) and K-lines made before Redis lost its data reach a node started
    afterwards on a fresh store, which then logs the account in and enforces them."""
    net = ClusterNet(
        2,
        accounts={"registration_throttle": 0},
        oper=[{"name": "root", "password": hash_password("pw")}],
    )
    alice = register_account(net[0], "alice")
    alice.send("JOIN #reg")
    alice.send("CS REGISTER #reg")
    alice.send("CS TOPICLOCK #reg ON")
    alice.send("PART #reg")  # (a registered channel with no member: in no S entry)
    caps = "sasl draft/read-marker draft/metadata-3"
    other = sasl_connect(net[0], "alice2", "alice", caps=caps)
    other.send("MARKREAD #reg timestamp=2026-01-01T00:00:01.000Z")
    other.send("METADATA * SET display-name :Alice Liddell")
    other.send("JOIN #away")
    other.send("QUIT")  # (its channels are kept for the account's next login)
    for name in ("kept", "gone"):  # (two uploads, as the HTTP side makes them)
        record = FileRecord(name, name * 8, 1, "text/plain", f"{name}.txt", "alice", 1000.0)
        net[0].server.files.add(record)
    files = net[0].server.files
    files.delete(files.records["gone"], 1001.0)
    net[0].collect_effects()
    root = net.register(1, "root")
    root.send("OPER root pw")
    net[1].run_offloads()
    root.send("KLINE *@10.9.9.9 :spam")
    before = stores_hold(net[0])
    assert before == stores_hold(net[1])
    assert before[1] == {"#reg": ("alice", True)} and before[2] == ["*@10.9.9.9"]
    assert before[3:] == (
        {"alice": {"display-name": "Alice Liddell"}},
        {("~alice", "#reg"): 1767225601.0},
        {"alice": ["#away"]},
        {"kept": 0.0, "gone": 1001.0},
    )
    recover(net, lose(net))
    third = start_node(net, 3)
    assert stores_hold(third) == before == stores_hold(net[0]) == stores_hold(net[1])
    assert third.store.metadata == before[3]
    bob = sasl_connect(third, "bob", "alice")
    bob.send("CS INFO #reg")
    info = [m.params[-1] for m in bob.messages() if m.command == "NOTICE"]
    assert info[0].startswith("Channel #reg, founder alice") and info[1] == "Topic lock: on"
    assert third.server.abuse.klines["*@10.9.9.9"].reason == "spam"


def test_a_setting_one_node_missed_in_the_lost_log_reaches_it() -> None:
    """Redis lost the end of the log after node 0 read its own AMODE and TOPICLOCK and
    before node 1 did (neither is sent again: node 0 read it back). The restatement of
    node 0, which read further, gives node 1's replica and store the settings."""
    net = ClusterNet(2, accounts={"registration_throttle": 0})
    alice = register_account(net[0], "alice")
    register_account(net[1], "bob").send("QUIT")
    alice.send("JOIN #reg")
    alice.send("CS REGISTER #reg")
    mark = len(net.bus.log)
    net[1].alive = False
    alice.send("CS AMODE #reg +o bob")
    alice.send("CS TOPICLOCK #reg ON")
    lost = lose(net, mark)
    net[1].alive = True
    assert net[1].server.services.chanserv.regs["#reg"].access == {}
    recover(net, lost)
    for node in net.nodes:
        reg = node.server.services.chanserv.regs["#reg"]
        assert (reg.access, reg.topiclock) == ({"bob": "o"}, True)
        assert node.store.channels["#reg"].access == (("bob", "o"),)
    assert stores_hold(net[0]) == stores_hold(net[1])


@pytest.mark.parametrize("order", [[1, 2], [2, 1]], ids=["furthest first", "furthest last"])
def test_a_kick_the_kicked_users_node_had_not_read_holds(order: list[int]) -> None:
    """Redis lost its log after node 0 read alice's KICK of bob and before bob's node 1
    did. The KICK is not sent again (its node read it back), and bob's node restates
    him in #c: the lists of node 0, which read further, decide, whichever restatement
    comes first. bob is told he is out, and every replica (a node started afterwards
    too) ends alike."""
    net = ClusterNet(2)
    alice, bob, carol = (
        net.register(i, nick) for i, nick in ((0, "alice"), (1, "bob"), (1, "carol"))
    )
    for c in (alice, bob, carol):
        c.send("JOIN #c")
    assert [len(c.lines()) for c in (alice, bob, carol)] == [5, 4, 3]  # (JOIN, NAMES, joins)
    mark = len(net.bus.log)
    net[1].alive = False
    alice.send("KICK #c bob :out")
    assert alice.lines() == [":alice!alice@127.0.0.1 KICK #c bob out"]
    lost = lose(net, mark)
    net[1].alive = True
    assert lost[1] == {1: f"{mark + 1}-0", 2: f"{mark}-0"}  # (node 0 had read further)
    recover(net, lost, order=order)
    for node in net.nodes:
        assert sorted(m.nick for m in node.server.channels["#c"].members) == ["alice", "carol"]
    assert any(" KICK #c bob " in line for line in bob.lines())
    assert state(net[0].server) == state(net[1].server) == state(start_node(net, 3).server)


def test_a_second_loss_of_the_log_is_a_round_of_its_own() -> None:
    """Redis lost its log twice. The positions the second round's restatements name are
    in the second log, lower than those of the first round's: still the node that had
    read furthest in it decides (the KICK of bob that only node 0 had read holds), since
    each restatement names its round (the bus's run)."""
    net = ClusterNet(2)
    alice, bob, carol = (
        net.register(i, nick) for i, nick in ((0, "alice"), (1, "bob"), (1, "carol"))
    )
    for c in (alice, bob, carol):
        c.send("JOIN #c")
    first = lose(net)
    recover(net, first, run="first")
    mark = len(net.bus.log)
    net[1].alive = False
    alice.send("KICK #c bob :out")
    lost = lose(net, mark)
    net[1].alive = True
    assert furthest(lost) < furthest(first)
    recover(net, lost, order=[2, 1], run="second")
    for node in net.nodes:
        assert sorted(m.nick for m in node.server.channels["#c"].members) == ["alice", "carol"]
    assert state(net[0].server) == state(net[1].server) == state(start_node(net, 3).server)


def test_the_users_of_a_node_started_on_the_new_log_keep_their_channels() -> None:
    """Redis came back empty, and a node started on it before the running nodes
    restated (after its settle): its user dave joined #c there. The restatements, made
    from the lost log, do not list him, but no node of their round holds him: he stays
    in #c on every replica, without the status that his node, which knew no #c yet, gave
    him as its founder."""
    net = ClusterNet(2)
    alice, bob = net.register(0, "alice"), net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
    lost = lose(net)
    for node in net.nodes:
        node.alive = False  # (their buses are still finding out what Redis lost)
    new = start_node(net, 3)
    dave = net.register(2, "dave")
    dave.send("JOIN #c")
    for node in net.nodes:
        node.alive = True
    recover(net, lost, restating=[1, 2])
    for node in net.nodes:
        chan = node.server.channels["#c"]
        assert sorted(m.nick for m in chan.members) == ["alice", "bob", "dave"]
        assert {m.nick: s for m, s in chan.members.items()} == {"alice": "o", "bob": "", "dave": ""}
    assert not any(" KICK " in line for line in dave.lines())
    assert state(net[0].server) == state(net[1].server) == state(new.server)


def furthest(lost: tuple[list[str], dict[int, str]]) -> int:
    """How far the node that had read furthest in a lost log had read."""
    return max(int(read.partition("-")[0]) for read in lost[1].values())
