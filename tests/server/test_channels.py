"""Channels: JOIN, PART, KICK, TOPIC, INVITE, NAMES and their rules.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

from corehelpers import START, Conn, Net, find, one, pair, trio


def test_join_creator_gets_op(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #Chan")
    assert alice.lines() == [
        ":alice!alice@127.0.0.1 JOIN #Chan",
        ":test.salon 353 alice = #Chan @alice",
        ":test.salon 366 alice #Chan :End of /NAMES list",
    ]
    bob = net.register("bob")
    bob.send("JOIN #chan")  # same channel, other case
    lines = bob.lines()
    assert lines[0] == ":bob!bob@127.0.0.1 JOIN #Chan"
    assert lines[1] == ":test.salon 353 bob = #Chan :@alice bob"
    assert alice.lines() == [":bob!bob@127.0.0.1 JOIN #Chan"]


def test_join_several_and_bad_names(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #a,#b,nochan")
    msgs = alice.messages()
    assert [m.params[0] for m in find(msgs, "JOIN")] == ["#a", "#b"]
    assert one(msgs, "403").params[1] == "nochan"
    alice.send("JOIN #a")  # already there: nothing
    alice.nothing()


def test_join_key(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +k sekrit")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +k sekrit"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    assert carol.lines() == [":test.salon 475 carol #c :Cannot join channel (+k)"]
    carol.send("JOIN #c wrong")
    assert carol.numerics() == ["475"]
    carol.send("JOIN #x,#c none,sekrit")
    assert [m.params[0] for m in find(carol.messages(), "JOIN")] == ["#x", "#c"]
    # The key is shown to members only.
    dave = net.register("dave")
    dave.send("MODE #c")
    assert one(dave.messages(), "324").params[1:] == ("#c", "+ntk", "*")
    bob.lines()
    bob.send("MODE #c")
    assert one(bob.messages(), "324").params[1:] == ("#c", "+ntk", "sekrit")


def test_join_limit(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c +l 2")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +l 2"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    assert carol.lines() == [":test.salon 471 carol #c :Cannot join channel (+l)"]
    alice.send("MODE #c -l")
    carol.send("JOIN #c")
    assert carol.numerics()[0] == "JOIN"


def test_invite_only_and_invite(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +i")
    alice.lines()
    carol = net.register("carol")
    carol.send("JOIN #c")
    assert carol.lines() == [":test.salon 473 carol #c :Cannot join channel (+i)"]
    bob.lines()
    bob.send("INVITE carol #c")  # not an op on a +i channel
    assert bob.numerics() == ["482"]
    alice.send("INVITE carol #c")
    assert alice.lines() == [":test.salon 341 alice carol #c"]
    assert carol.lines() == [":alice!alice@127.0.0.1 INVITE carol #c"]
    alice.send("INVITE nobody #c")
    assert alice.numerics() == ["401"]
    alice.send("INVITE bob #c")
    assert alice.numerics() == ["443"]
    carol.send("JOIN #c")
    assert carol.numerics()[0] == "JOIN"
    # The invitation is used up.
    carol.send("PART #c")
    carol.send("JOIN #c")
    assert carol.numerics()[-1] == "473"


def test_invex_lets_in(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c +iI carol!*@*")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +iI carol!*@*"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    assert carol.numerics()[0] == "JOIN"
    dave = net.register("dave")
    dave.send("JOIN #c")
    assert dave.numerics() == ["473"]


def test_ban_and_exception(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +b carol")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +b carol!*@*"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    assert carol.lines() == [":test.salon 474 carol #c :Cannot join channel (+b)"]
    alice.send("MODE #c +e *!carol@127.0.0.*")
    carol.send("JOIN #c")
    assert carol.numerics()[0] == "JOIN"
    dave = net.register("dave")
    alice.send("MODE #c +b *!*@127.0.0.1")
    dave.send("JOIN #c")
    assert dave.numerics() == ["474"]
    # A banned member cannot speak; an excepted one can.
    bob.lines()
    bob.send("PRIVMSG #c :am I banned")
    assert bob.lines() == [":test.salon 404 bob #c :Cannot send to channel (+b)"]
    carol.lines()
    carol.send("PRIVMSG #c :excepted")
    carol.nothing()
    assert ":carol!carol@127.0.0.1 PRIVMSG #c excepted" in alice.lines()


def test_join_zero_parts_everything(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("JOIN #d")
    alice.lines()
    alice.send("JOIN 0")
    lines = alice.lines()
    assert sorted(lines) == [":alice!alice@127.0.0.1 PART #c", ":alice!alice@127.0.0.1 PART #d"]
    assert alice.client.channels == {}
    assert bob.lines() == [":alice!alice@127.0.0.1 PART #c"]
    assert "#d" not in net.server.channels


def test_too_many_channels() -> None:
    net = Net(limits={"max_channels": 2})
    alice = net.register("alice")
    alice.send("JOIN #a,#b,#c")
    msgs = alice.messages()
    assert [m.params[0] for m in find(msgs, "JOIN")] == ["#a", "#b"]
    assert one(msgs, "405").params[1] == "#c"


def test_channel_name_rules(net: Net) -> None:
    alice = net.register("alice")
    for name in ("#", "chan", "&chan", "#" + "x" * 64, "#a\x07b"):
        alice.send(f"JOIN {name}")
        assert alice.numerics() == ["403"], name
    alice.send("JOIN #" + "x" * 63)  # CHANNELLEN=64
    assert alice.numerics()[0] == "JOIN"


def test_part(net: Net) -> None:
    alice, bob = pair(net)
    bob.send("PART #c :see you")
    assert bob.lines() == [":bob!bob@127.0.0.1 PART #c :see you"]
    assert alice.lines() == [":bob!bob@127.0.0.1 PART #c :see you"]
    bob.send("PART #c")
    assert bob.lines() == [":test.salon 442 bob #c :You're not on that channel"]
    bob.send("PART #nowhere")
    assert bob.numerics() == ["403"]
    alice.send("PART #c")
    assert "#c" not in net.server.channels  # the last one out closes the channel


def test_kick(net: Net) -> None:
    alice, bob, carol = trio(net)
    bob.send("KICK #c carol")
    assert bob.lines() == [":test.salon 482 bob #c :You're not channel operator"]
    alice.send("KICK #c carol :behave")
    expected = ":alice!alice@127.0.0.1 KICK #c carol behave"
    assert alice.lines() == [expected]
    assert bob.lines() == [expected]
    assert carol.lines() == [expected]
    assert "c" not in {c.nick[0] for c in net.server.channels["#c"].members}
    alice.send("KICK #c carol")
    assert alice.numerics() == ["441"]
    alice.send("KICK #c nobody")
    assert alice.numerics() == ["401"]
    alice.send("KICK #c bob")  # the default reason is the kicker's nick
    assert alice.lines() == [":alice!alice@127.0.0.1 KICK #c bob alice"]
    bob.send("JOIN #c")
    carol.send("JOIN #c")
    alice.lines()
    alice.send("KICK #c bob,carol :both")
    assert alice.lines() == [
        ":alice!alice@127.0.0.1 KICK #c bob both",
        ":alice!alice@127.0.0.1 KICK #c carol both",
    ]
    carol.lines()
    carol.send("KICK #c alice")
    assert carol.numerics() == ["442"]


def test_topic_and_333(net: Net) -> None:
    alice, bob = pair(net)
    bob.send("TOPIC #c")
    assert bob.lines() == [":test.salon 331 bob #c :No topic is set"]
    net.advance(5)
    alice.send("TOPIC #c :Hello world")
    assert alice.lines() == [":alice!alice@127.0.0.1 TOPIC #c :Hello world"]
    assert bob.lines() == [":alice!alice@127.0.0.1 TOPIC #c :Hello world"]
    bob.send("TOPIC #c :mine now")  # +t by default
    assert bob.numerics() == ["482"]
    carol = net.register("carol")
    carol.send("TOPIC #c")
    assert carol.lines() == [
        ":test.salon 332 carol #c :Hello world",
        f":test.salon 333 carol #c alice!alice@127.0.0.1 {int(START + 5)}",
    ]
    carol.send("TOPIC #c :outsider")
    assert carol.numerics() == ["442"]
    carol.send("JOIN #c")
    assert carol.numerics() == ["JOIN", "332", "333", "353", "366"]
    alice.send("MODE #c -t")
    bob.send("TOPIC #c :mine now")
    assert ":bob!bob@127.0.0.1 TOPIC #c :mine now" in bob.lines()


def test_topic_is_truncated_to_topiclen() -> None:
    net = Net(limits={"topiclen": 10})
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.send("TOPIC #c :0123456789abcdef")
    assert alice.lines()[-1] == ":alice!alice@127.0.0.1 TOPIC #c 0123456789"


def test_names(net: Net) -> None:
    alice, bob = pair(net)
    carol = net.register("carol")
    carol.send("NAMES #c")
    assert carol.lines() == [
        ":test.salon 353 carol = #c :@alice bob",
        ":test.salon 366 carol #c :End of /NAMES list",
    ]
    carol.send("NAMES #none")
    assert carol.lines() == [":test.salon 366 carol #none :End of /NAMES list"]
    bob.send("MODE bob +i")
    carol.send("NAMES #c")
    assert one(carol.messages(), "353").params[-1] == "@alice"  # invisible, not shared
    alice.send("MODE #c +s")
    carol.send("NAMES #c")
    assert carol.numerics() == ["366"]
    alice.lines()
    alice.send("NAMES #c")
    assert one(alice.messages(), "353").params[1:] == ("@", "#c", "@alice bob")


def test_names_multi_prefix_and_userhost_in_names(net: Net) -> None:
    alice = net.register("alice", caps=["multi-prefix", "userhost-in-names"])
    alice.send("JOIN #c")
    alice.send("MODE #c +v alice")
    alice.lines()
    alice.send("NAMES #c")
    assert one(alice.messages(), "353").params[-1] == "@+alice!alice@127.0.0.1"
    bob = net.register("bob")
    bob.send("NAMES #c")
    assert one(bob.messages(), "353").params[-1] == "@alice"


def _list_names(conn: Conn, arg: str = "") -> list[str]:
    conn.send(f"LIST {arg}".strip())
    msgs = conn.messages()
    assert msgs[0].command == "321" and msgs[-1].command == "323"
    return sorted(m.params[1] for m in find(msgs, "322"))


def test_list_and_elist_filters(net: Net) -> None:
    alice, _ = pair(net, "#big")  # created at START, two users
    alice.send("TOPIC #big :an old topic")
    net.advance(600)  # ten minutes later
    alice.send("JOIN #new")
    alice.send("JOIN #quiet")
    alice.send("TOPIC #new :a new topic")
    alice.lines()
    carol = net.register("carol")
    carol.send("LIST")
    msgs = carol.messages()
    assert msgs[0].params[1:] == ("Channel", "Users  Name")
    rows = {m.params[1]: m.params[2:] for m in find(msgs, "322")}
    assert rows == {
        "#big": ("2", "an old topic"),
        "#new": ("1", "a new topic"),
        "#quiet": ("1", ""),
    }
    assert _list_names(carol, ">1") == ["#big"]
    assert _list_names(carol, "<2") == ["#new", "#quiet"]
    assert _list_names(carol, "C<5") == ["#new", "#quiet"]
    assert _list_names(carol, "C>5") == ["#big"]
    assert _list_names(carol, "T<5") == ["#new"]
    assert _list_names(carol, "T>5") == ["#big"]
    assert _list_names(carol, "#new,#big") == ["#big", "#new"]
    assert _list_names(carol, "#q*") == ["#quiet"]
    assert _list_names(carol, "!#q*") == ["#big", "#new"]
    assert _list_names(carol, "#nothing") == []
    alice.send("MODE #quiet +s")
    assert _list_names(carol, "") == ["#big", "#new"]
    alice.lines()
    assert _list_names(alice, "") == ["#big", "#new", "#quiet"]
