"""Issue 19, points 3 to 5, in process: two or three cores on one MemoryBus (one order for
the whole network), users on each, every IRC behaviour checked from both sides."""

from __future__ import annotations

import re

import pytest
from accounthelpers import PASSWORD, cheap_argon2
from clusterhelpers import ClusterNet, Node
from corehelpers import Conn, find, one

from salon.passwords import hash_password
from tests.server.test_events import state

__all__ = ["cheap_argon2"]


def names(conn: Conn, channel: str) -> list[str]:
    """NAMES ``channel`` as ``conn`` gets it: the 353 and 366 lines, without the target."""
    conn.lines()
    conn.send(f"NAMES {channel}")
    return [line.split(" ", 3)[3] for line in conn.lines() if re.match(r"^:\S+ (353|366) ", line)]


def test_a_nick_held_on_the_other_node_is_in_use() -> None:
    net = ClusterNet(2)
    net.register(0, "alice")
    conn = net.connect(1)
    conn.send("NICK Alice")
    assert conn.numerics() == ["433"]
    conn.send("NICK bob")
    conn.send("USER bob 0 * :Bob")
    assert "001" in conn.numerics()
    conn.send("NICK ALICE")
    assert conn.numerics() == ["433"]
    assert set(net.users(0)) == set(net.users(1)) == {"alice", "bob"}


def test_join_part_nick_kick_quit_are_seen_on_both_nodes_and_names_are_identical() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    carol = net.register(1, "carol", caps=["multi-prefix", "userhost-in-names"])
    alice.send("JOIN #c")
    assert alice.numerics() == ["JOIN", "353", "366"]
    bob.send("JOIN #c")
    assert bob.numerics() == ["JOIN", "353", "366"]
    joined = alice.lines()
    assert (
        len(joined) == 1
        and re.match(r"^@time=\S+;msgid=\S+ :bob!bob@127\.0\.0\.1 JOIN #c$", joined[0])
    ) or (joined == [":bob!bob@127.0.0.1 JOIN #c"]), joined
    carol.send("JOIN #c")
    carol.lines()
    assert (
        names(alice, "#c")
        == names(bob, "#c")
        == ["= #c :@alice bob carol", "#c :End of /NAMES list"]
    )
    bob.send("NICK robert")
    assert alice.lines() == [":bob!bob@127.0.0.1 NICK robert"]
    assert carol.lines() == [":bob!bob@127.0.0.1 NICK robert"]
    assert bob.lines() == [":bob!bob@127.0.0.1 NICK robert"]
    alice.send("KICK #c carol :out now")
    assert bob.lines() == [":alice!alice@127.0.0.1 KICK #c carol :out now"]
    assert carol.lines() == [":alice!alice@127.0.0.1 KICK #c carol :out now"]
    alice.lines()
    bob.send("PART #c :bye now")
    assert alice.lines() == [":robert!bob@127.0.0.1 PART #c :bye now"]
    bob.send("JOIN #c")
    alice.lines()
    bob.send("QUIT :gone")
    assert alice.lines() == [":robert!bob@127.0.0.1 QUIT :Quit: gone"]
    assert names(alice, "#c") == ["= #c @alice", "#c :End of /NAMES list"]
    assert names(carol, "#c") == ["= #c @alice!alice@127.0.0.1", "#c :End of /NAMES list"]
    assert state(net[0].server) == state(net[1].server)
    # The nick is free again, on both nodes.
    net.register(0, "robert")


def test_lines_of_state_changes_are_byte_identical_on_both_nodes() -> None:
    net = ClusterNet(2)
    wanted = ["message-tags", "server-time"]
    alice = net.register(0, "alice", caps=wanted)
    a2 = net.register(0, "a2", caps=wanted)
    b2 = net.register(1, "b2", caps=wanted)
    a2.send("JOIN #c")
    b2.send("JOIN #c")
    a2.lines()
    b2.lines()
    alice.send("JOIN #c")
    net.advance(1.5)
    a2.send("TOPIC #c :hello")
    a2.send("MODE #c +m")
    alice.send("PART #c")
    from_a = [line for line in a2.lines() if " JOIN #c" not in line or "alice" in line]
    from_b = [line for line in b2.lines() if " JOIN #c" not in line or "alice" in line]
    assert from_a == from_b
    assert [line.split(" ", 2)[2].split(" ")[0] for line in from_a] == [
        "JOIN",
        "TOPIC",
        "MODE",
        "PART",
    ]


def test_who_whois_list_topic_across_nodes() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")
    alice.send("TOPIC #c :the topic")
    bob.send("JOIN #c")
    msgs = bob.messages()
    assert one(msgs, "332").params[-1] == "the topic"
    assert one(msgs, "333").params[2] == "alice!alice@127.0.0.1"
    bob.send("WHO #c")
    who = bob.messages()
    assert sorted(m.params[5] for m in find(who, "352")) == ["alice", "bob"]
    bob.send("WHOIS alice")
    whois = bob.messages()
    assert one(whois, "311").params[1:4] == ("alice", "alice", "127.0.0.1")
    assert one(whois, "319").params[-1].strip() == "@#c"
    alice.send("LIST")
    listed = one(alice.messages(), "322")
    assert listed.params[1:] == ("#c", "2", "the topic")


def test_channel_modes_set_on_one_node_hold_on_the_other() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    a2 = net.register(0, "a2")
    bob = net.register(1, "bob", ip="10.0.0.2")
    carol = net.register(1, "carol")
    alice.send("JOIN #c")
    a2.send("JOIN #c")
    alice.send("MODE #c +l 3")
    carol.send("JOIN #c")
    assert carol.numerics() == ["JOIN", "353", "366"]
    bob.send("JOIN #c")
    assert bob.numerics() == ["471"]  # +l counts both nodes' members
    carol.send("PART #c")
    alice.send("MODE #c -l")
    alice.send("MODE #c +b *!*@10.0.0.2")
    bob.send("JOIN #c")
    assert bob.numerics() == ["474"]
    alice.send("MODE #c -b+i *!*@10.0.0.2")
    alice.lines()
    bob.send("JOIN #c")
    assert bob.numerics() == ["473"]
    alice.send("INVITE bob #c")
    assert bob.expect(r":alice!alice@127\.0\.0\.1 INVITE bob #c")
    bob.send("JOIN #c")
    assert bob.numerics() == ["JOIN", "353", "366"]
    alice.send("MODE #c -i+b *!*@10.0.0.2")
    bob.lines()
    bob.send("PRIVMSG #c :hi")
    assert bob.numerics() == ["404"]  # banned: cannot speak
    assert state(net[0].server) == state(net[1].server)


def test_messages_have_one_msgid_and_time_for_every_recipient() -> None:
    net = ClusterNet(2)
    wanted = ["message-tags", "server-time", "echo-message", "labeled-response", "batch"]
    alice = net.register(0, "alice", caps=wanted)
    a2 = net.register(0, "a2", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    for c in (alice, a2, bob):
        c.send("JOIN #c")
    for c in (alice, a2, bob):
        c.lines()
    alice.send("@label=x1 PRIVMSG #c :hello all")
    echo = one(alice.messages(), "PRIVMSG")
    assert echo.tags["label"] == "x1"
    got_a = one(a2.messages(), "PRIVMSG")
    got_b = one(bob.messages(), "PRIVMSG")
    for m in (got_a, got_b):
        assert m.tags["msgid"] == echo.tags["msgid"] and m.tags["time"] == echo.tags["time"]
        assert m.params == ("#c", "hello all")
    # A private message across nodes, and TAGMSG.
    bob.send("PRIVMSG alice :psst")
    pm = one(alice.messages(), "PRIVMSG")
    assert pm.params == ("alice", "psst") and pm.source == "bob!bob@127.0.0.1"
    assert one(bob.messages(), "PRIVMSG").tags["msgid"] == pm.tags["msgid"]
    bob.send("@+typing=active TAGMSG #c")
    t1 = one(alice.messages(), "TAGMSG")
    t2 = one(a2.messages(), "TAGMSG")
    assert t1.tags == t2.tags and t1.tags["+typing"] == "active"


def test_channel_messages_reach_the_members_of_the_moment_on_each_node() -> None:
    """A node delivers a channel's messages to its own members only (a list it keeps
    between changes): whoever joined since the last message gets the next, whoever left
    does not, on the sender's node and on the other."""
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    carol = net.register(0, "carol")
    dave = net.register(1, "dave")
    everyone = [alice, bob, carol, dave]

    def then(*lines: tuple[Conn, str]) -> None:
        for conn, line in lines:
            conn.send(line)
        for conn in everyone:
            conn.lines()

    def reached(text: str) -> dict[str, list[str]]:
        """Who got ``text`` when alice said it, and when bob did."""
        got: dict[str, list[str]] = {}
        for sender in (alice, bob):
            sender.send(f"PRIVMSG #c :{text} from {sender.nick}")
            for conn in everyone:
                if any(line.endswith(f" :{text} from {sender.nick}") for line in conn.lines()):
                    got.setdefault(sender.nick, []).append(conn.nick)
        return got

    then((alice, "JOIN #c"), (bob, "JOIN #c"))
    assert reached("one") == {"alice": ["bob"], "bob": ["alice"]}
    then((carol, "JOIN #c"), (dave, "JOIN #c"))
    assert reached("two") == {"alice": ["bob", "carol", "dave"], "bob": ["alice", "carol", "dave"]}
    then((carol, "PART #c"), (alice, "KICK #c dave"))
    assert reached("three") == {"alice": ["bob"], "bob": ["alice"]}
    then((carol, "JOIN #c"), (dave, "JOIN #c"), (dave, "QUIT :bye"))
    everyone.remove(dave)
    assert reached("four") == {"alice": ["bob", "carol"], "bob": ["alice", "carol"]}


def test_away_monitor_whowas_lusers_across_nodes() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    bob.send("MONITOR + carol")
    assert bob.numerics() == ["731"]
    net.register(0, "dave")
    carol = net.register(0, "carol")
    assert bob.numerics() == ["730"]
    carol.send("AWAY :lunch")
    bob.send("PRIVMSG carol :hi")
    assert one(bob.messages(), "301").params[-1] == "lunch"
    carol.send("QUIT")
    assert bob.numerics() == ["731"]
    bob.send("WHOWAS carol")
    assert one(bob.messages(), "314").params[1] == "carol"
    for conn in (alice, bob):
        conn.send("LUSERS")
        assert one(conn.messages(), "251").params[-1].startswith("There are 3 users")


def test_kill_kline_wallops_across_nodes() -> None:
    net = ClusterNet(2, oper=[{"name": "root", "password": hash_password("pw")}])
    root = net.register(0, "root")
    root.send("OPER root pw")
    net[0].run_offloads()
    root.send("MODE root +w")
    root.lines()
    watcher = net.register(1, "watcher")
    watcher.send("MODE watcher +w")
    net.register(1, "victim")
    spammer = net.register(1, "spammer", ip="10.9.9.9")
    victim_node = net[1]
    root.send("KILL victim :bye")
    assert any(c.nick == "victim" for c in victim_node.closed)
    assert "victim" not in net.users(0) and "victim" not in net.users(1)
    root.send("KLINE *@10.9.9.9 :spam")
    assert spammer.client in victim_node.closed
    assert "spammer" not in net.users(0)
    watcher.lines()
    root.send("WALLOPS :hear me")
    assert watcher.lines() == [":root!root@127.0.0.1 WALLOPS :hear me"]


def test_one_order_every_recipient_sees_the_same_msgid_sequence() -> None:
    net = ClusterNet(2)
    wanted = ["message-tags", "echo-message"]
    senders = [net.register(i % 2, f"s{i}", caps=wanted) for i in range(6)]
    readers = [net.register(i % 2, f"r{i}", caps=wanted) for i in range(2)]
    for c in senders + readers:
        c.send("JOIN #flood")
    for c in senders + readers:
        c.lines()
    with net.hold():
        for n in range(40):
            for s in senders:
                s.send(f"PRIVMSG #flood :{s.nick} {n}")
    net.release(seed=7)
    seqs = []
    for c in senders + readers:
        msgs = [m for m in c.messages() if m.command == "PRIVMSG"]
        assert len(msgs) == 240
        seqs.append([m.tags["msgid"] for m in msgs])
        for s in senders:  # each sender's messages in order
            mine = [m.params[1] for m in msgs if m.source.startswith(s.nick + "!")]
            assert mine == [f"{s.nick} {n}" for n in range(40)]
    assert all(seq == seqs[0] for seq in seqs)
    assert len(set(seqs[0])) == 240


def test_nick_race_exactly_one_of_four_wins() -> None:
    net = ClusterNet(2)
    clients = [net.register(i % 2, f"c{i}") for i in range(4)]
    for round_ in range(200):
        wanted = f"x{round_}"
        with net.hold():
            for c in clients:
                c.send(f"NICK {wanted}")
        net.release(seed=round_)
        winners = [c for c in clients if c.client.nick == wanted]
        assert len(winners) == 1
        refused = [c for c in clients if c is not winners[0]]
        for c in refused:
            assert "433" in c.numerics()
        winners[0].lines()
        assert set(net.users(0)) == set(net.users(1))
        # Back to distinct nicks for the next round.
        for i, c in enumerate(clients):
            c.send(f"NICK c{i}")
            c.lines()


def test_nick_race_at_registration() -> None:
    net = ClusterNet(2)
    for round_ in range(50):
        conns = [net.connect(i % 2) for i in range(4)]
        with net.hold():
            for c in conns:
                c.send(f"NICK same{round_}")
                c.send("USER u 0 * :u")
        net.release(seed=round_)
        welcomed = [c for c in conns if c.client.registered]
        assert len(welcomed) == 1
        for c in conns:
            got = c.numerics()
            assert ("001" in got) == (c is welcomed[0])
            if c is not welcomed[0]:
                assert "433" in got
        for c in conns:
            c.send("QUIT")
        assert state(net[0].server) == state(net[1].server)


def test_channel_creation_race_one_founder() -> None:
    net = ClusterNet(2)
    a = net.register(0, "a")
    b = net.register(1, "b")
    for round_ in range(200):
        name = f"#new{round_}"
        with net.hold():
            a.send(f"JOIN {name}")
            b.send(f"JOIN {name}")
        net.release(seed=round_)
        chan0 = net[0].server.channels[name]
        ops = [m.nick for m, modes in chan0.members.items() if "o" in modes]
        assert len(ops) == 1
        assert state(net[0].server)["channels"][name] == state(net[1].server)["channels"][name]
        a.send(f"PART {name}")
        b.send(f"PART {name}")
        a.lines()
        b.lines()


def test_a_dead_node_s_users_quit_everywhere_and_free_their_nicks() -> None:
    net = ClusterNet(3)
    alice = net.register(0, "alice")
    net.register(1, "bob")
    carol = net.register(2, "carol")
    for c in (alice, carol):
        c.send("JOIN #c")
        c.lines()
    for i in (0, 2):
        assert "bob" in net.users(i)
    net.kill(1)
    assert "bob" not in net.users(0) and "bob" not in net.users(2)
    net.register(0, "bob")
    assert state(net[0].server) == state(net[2].server)


def test_chathistory_and_search_of_a_message_sent_on_the_other_node() -> None:
    net = ClusterNet(2)
    wanted = ["draft/chathistory", "batch", "message-tags", "server-time", "soju.im/search"]
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    for c in (alice, bob):
        c.send("JOIN #c")
        c.lines()
    alice.send("PRIVMSG #c :remember this line")
    sent = one(bob.messages(), "PRIVMSG")
    alice.send("PRIVMSG bob :a private word")
    private = one(bob.messages(), "PRIVMSG")
    bob.send("CHATHISTORY LATEST #c * 10")
    replayed = [m for m in bob.messages() if m.command == "PRIVMSG"]
    assert [(m.tags["msgid"], m.params) for m in replayed] == [
        (sent.tags["msgid"], ("#c", "remember this line"))
    ]
    bob.send("CHATHISTORY LATEST alice * 10")
    replayed = [m for m in bob.messages() if m.command == "PRIVMSG"]
    assert [m.tags["msgid"] for m in replayed] == [private.tags["msgid"]]
    bob.send("SEARCH in=#c;text=remember")
    found = [m for m in bob.messages() if m.command == "PRIVMSG"]
    assert [m.tags["msgid"] for m in found] == [sent.tags["msgid"]]


def test_user_state_notifications_cross_nodes() -> None:
    """extended-join, away-notify, SETNAME, account-notify, invite-notify, ISON, USERHOST,
    WHO by mask, and a @#chan status message, between users of two nodes."""
    net = ClusterNet(2, accounts={"registration_throttle": 0})
    wanted = [
        "extended-join", "away-notify", "setname", "account-notify", "invite-notify",
    ]  # fmt: skip
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    alice.send("JOIN #c")
    alice.lines()
    bob.send("JOIN #c")
    assert alice.lines() == [":bob!bob@127.0.0.1 JOIN #c * :bob real"]
    bob.send("AWAY :out")
    assert alice.lines() == [":bob!bob@127.0.0.1 AWAY out"]
    bob.send("SETNAME :Bob Builder")
    assert alice.lines() == [":bob!bob@127.0.0.1 SETNAME :Bob Builder"]
    bob.send("REGISTER * * :" + PASSWORD)
    net[1].run_offloads()
    assert alice.lines() == [":bob!bob@127.0.0.1 ACCOUNT bob"]
    carol = net.register(1, "carol")
    bob.lines()
    alice.send("INVITE carol #c")
    assert bob.lines() == [":alice!alice@127.0.0.1 INVITE carol #c"]
    carol.lines()
    alice.send("ISON bob carol nobody")
    assert one(alice.messages(), "303").params[-1] == "bob carol"
    alice.send("USERHOST bob")
    assert one(alice.messages(), "302").params[-1] == "bob=-bob@127.0.0.1"
    alice.send("WHO b*")
    assert [m.params[5] for m in find(alice.messages(), "352")] == ["bob"]
    bob.lines()
    carol.send("JOIN #c")
    alice.lines()
    bob.lines()
    alice.send("PRIVMSG @#c :ops only")
    assert alice.lines() == []
    assert bob.lines() == [] and [m for m in carol.messages() if m.command == "PRIVMSG"] == []
    alice.send("MODE #c +o bob")
    bob.lines()
    alice.send("PRIVMSG @#c :ops only now")
    assert bob.lines()[-1].endswith(":alice!alice@127.0.0.1 PRIVMSG @#c :ops only now")


def test_a_plain_text_user_talks_with_an_irc_user_on_the_other_node() -> None:
    net = ClusterNet(2)
    bob = net.register(1, "bob")
    bob.send("JOIN #lobby")
    bob.lines()
    pat = net[0].plain()
    pat.lines()
    pat.send("pat")
    assert pat.lines() == [
        "Hello pat! Type /help for help, and bye, quit, exit or over to leave.",
        "* You are now in #lobby",
        "* In #lobby: @bob, pat",
    ]
    assert bob.lines() == [":pat!plain@127.0.0.1 JOIN #lobby"]
    pat.send("hi bob")
    assert bob.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :hi bob"]
    bob.send("PRIVMSG #lobby :hello pat")
    assert pat.lines() == ["bob: hello pat"]
    conn = net.connect(1)
    conn.send("NICK pat")
    assert conn.numerics() == ["433"]


def test_pong_follows_what_the_network_ordered_before_the_ping() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
        c.lines()
    with net.hold():
        alice.send("PRIVMSG #c :first in line")
        bob.send("PING :sync")
    assert bob.lines() == []  # the PONG waits for its turn
    net.release(order=[0, 1])
    assert bob.lines() == [
        ":alice!alice@127.0.0.1 PRIVMSG #c :first in line",
        ":test.salon PONG test.salon sync",
    ]


def test_non_ascii_text_crosses_nodes_unchanged() -> None:
    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    for c in (alice, bob):
        c.send("JOIN #c")
        c.lines()
    text = "café ☕ 日本語 😀"
    alice.send(f"PRIVMSG #c :{text}")
    alice.send(f"TOPIC #c :{text}")
    assert bob.lines() == [
        f":alice!alice@127.0.0.1 PRIVMSG #c :{text}",
        f":alice!alice@127.0.0.1 TOPIC #c :{text}",
    ]


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_history_holds_each_event_once(shared_store: bool) -> None:
    """With a store per node each node stores what it applies; with one store for all
    (PostgreSQL), only the node where a change or message was made stores it."""
    net = ClusterNet(2, shared_store=shared_store)
    wanted = ["draft/chathistory", "batch", "message-tags", "server-time", "draft/event-playback"]
    alice = net.register(0, "alice", caps=wanted)
    bob = net.register(1, "bob", caps=wanted)
    for c in (alice, bob):
        c.send("JOIN #c")
    alice.send("PRIVMSG #c :from a")
    bob.send("PRIVMSG #c :from b")
    alice.send("TOPIC #c :a topic")
    for c in (alice, bob):
        c.lines()
        c.send("CHATHISTORY LATEST #c * 50")
        got = [(m.command, m.source.split("!")[0]) for m in c.messages() if m.command != "BATCH"]
        assert got == [
            ("JOIN", "alice"),
            ("JOIN", "bob"),
            ("PRIVMSG", "alice"),
            ("PRIVMSG", "bob"),
            ("TOPIC", "alice"),
        ]


@pytest.mark.parametrize("shared_store", [False, True], ids=["store per node", "one store"])
def test_an_account_registered_on_one_node_logs_in_on_the_other(shared_store: bool) -> None:
    import base64

    net = ClusterNet(2, shared_store=shared_store, accounts={"registration_throttle": 0})
    alice = net.register(0, "alice")
    alice.send("REGISTER * * :" + PASSWORD)
    net[0].run_offloads()
    assert "REGISTER" in alice.numerics()
    conn = net.connect(1)
    conn.send("CAP REQ :sasl")
    conn.send("AUTHENTICATE PLAIN")
    plain = base64.b64encode(f"alice\0alice\0{PASSWORD}".encode()).decode()
    conn.send("AUTHENTICATE " + plain)
    net[1].run_offloads()
    assert "903" in conn.numerics()
    # Stored once per store: the node's own, or the one they share.
    for node in net.nodes:
        assert [r.name for r in node.store.load_accounts()] == ["alice"]


def test_either_form_of_a_message_entry_gives_the_same_lines_and_history() -> None:
    """One line to one target without client tags travels as a compact entry, any other
    message as JSON (salon.server.cluster._compact_message): either way, a recipient gets
    the same bytes as one on the sender's node with the same capabilities, and each node
    stores the same history rows."""
    net = ClusterNet(2, accounts={"registration_throttle": 0})
    wanted = ["message-tags", "server-time", "account-tag", "echo-message"]
    alice = net.register(0, "alice", caps=wanted)
    near, near_plain = net.register(0, "near", caps=wanted), net.register(0, "nearplain")
    far, far_plain = net.register(1, "far", caps=wanted), net.register(1, "farplain")
    everyone = (alice, near, near_plain, far, far_plain)
    alice.send("REGISTER * * :" + PASSWORD)
    net[0].run_offloads()
    alice.send("MODE alice +B")  # a bot: one more tag
    for c in everyone:
        c.send("JOIN #c")
    for c in everyone:
        c.lines()
    for line in (
        "PRIVMSG #c :compact, to a channel",
        "NOTICE #c ::a notice with a colon",
        "@+draft/react=x PRIVMSG #c :with a client tag",
        "@+typing=active TAGMSG #c",
    ):
        alice.send(line)
        echoed = alice.lines()
        assert len(echoed) == 1 and "account=alice" in echoed[0] and ";bot" in echoed[0]
        assert far.lines() == near.lines() == echoed, line
        assert (
            far_plain.lines()
            == near_plain.lines()
            == ([] if "TAGMSG" in line else [echoed[0].split(" ", 1)[1]])
        ), line
    alice.send("PRIVMSG far :compact, private")
    echoed = alice.lines()
    assert far.lines() == echoed and len(echoed) == 1
    alice.send("PRIVMSG #c,far :two targets")
    echoed = alice.lines()
    assert near.lines() == echoed[:1] and far.lines() == echoed and len(echoed) == 2
    rows = [{k: sorted(v) for k, v in node.store.events.items()} for node in net.nodes]
    assert rows[0] == rows[1]
    assert [e.params for e in rows[0]["#c"] if e.command in ("PRIVMSG", "NOTICE")] == [
        ("#c", "compact, to a channel"),
        ("#c", ":a notice with a colon"),
        ("#c", "with a client tag"),
        ("#c", "two targets"),
    ]


def test_a_restarted_node_tells_the_messages_its_store_has_that_were_never_ordered() -> None:
    """Census (a node's start with a store of its own): of the messages in the stores,
    those committed by node 1 but never sent (it died first) are unordered, and only
    they: the rest, of either node, compact entries or JSON ones, are in the log."""
    from salon.server.cluster import ORDER_SLACK, Census

    net = ClusterNet(2)
    net.advance(1)  # (messages come after the nodes' starts)
    alice = net.register(0, "alice", ["message-tags"])
    bob = net.register(1, "bob", ["message-tags"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
    alice.send("PRIVMSG #c :ordered")
    alice.send("@+x=y PRIVMSG #c :ordered, with a tag")
    bob.send("PRIVMSG #c :from b")
    net.advance(ORDER_SLACK + 1)
    with net.hold():
        alice.send("PRIVMSG #c :committed, never ordered")
        alice.send("@+x=y PRIVMSG #c :this one neither")
        net.kill(0)
    later = Node(net, 3, None)
    census = later.server.cluster.census = Census({}, {}, set())  # type: ignore[union-attr]
    later.receive()
    assert census.since() is not None
    rows = [e for e in net[0].store.events["#c"] if e.command == "PRIVMSG"]
    assert [e.text for e in rows if census.unordered(e.msgid, e.time)] == [
        "committed, never ordered",
        "this one neither",
    ]
    rows = [e for e in net[1].store.events["#c"] if e.command == "PRIVMSG"]
    assert [e.text for e in rows] == ["ordered", "ordered, with a tag", "from b"]
    assert not [e for e in rows if census.unordered(e.msgid, e.time)]
    # A log trimmed past the nodes' starts: each origin is judged from its first entry
    # left, ORDER_SLACK later.
    trimmed = Census({}, {}, set())
    later = Node(net, 4, None)
    later.server.cluster.census = trimmed  # type: ignore[union-attr]
    later.server.bus_entries([e for e in net.bus.log if not e.endswith(',"N"]')], net.now)
    assert not trimmed.started
    rows = net[0].store.events["#c"]
    assert [e.text for e in rows if trimmed.unordered(e.msgid, e.time)] == [
        "committed, never ordered",
        "this one neither",
    ]
