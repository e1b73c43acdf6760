"""The sans-I/O server core, in process: client pairs, an injected clock, no sockets.

Every test drives :class:`salon.server.core.Server` through the same calls the asyncio
shell makes (connect, feed, tick, check_timeouts, complete) and reads the outboxes.
"""

from __future__ import annotations

import re

import pytest
from corehelpers import START, Conn, Net, find, isupport, make_config, one

from salon.passwords import hash_password
from salon.proto.message import Message
from salon.server.client import Kind
from salon.server.commands import COMMANDS, Command
from salon.server.core import format_time
from salon.server.effects import Close, Offload

TIME_RX = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def net() -> Net:
    return Net()


def pair(net: Net, channel: str = "#c") -> tuple[Conn, Conn]:
    """alice (creator, op) and bob, both in ``channel``, outboxes cleared."""
    alice = net.register("alice")
    bob = net.register("bob")
    alice.send(f"JOIN {channel}")
    bob.send(f"JOIN {channel}")
    alice.lines()
    bob.lines()
    return alice, bob


def trio(net: Net, channel: str = "#c") -> tuple[Conn, Conn, Conn]:
    alice, bob = pair(net, channel)
    carol = net.register("carol")
    carol.send(f"JOIN {channel}")
    carol.lines()
    alice.lines()
    bob.lines()
    return alice, bob, carol


# ==================================================================================
# Registration
# ==================================================================================


def test_registration_burst(net: Net) -> None:
    conn = net.connect()
    assert conn.client.registered is False
    conn.send("NICK alice")
    conn.nothing()
    conn.send("USER al 0 * :Alice Liddell")
    msgs = conn.messages()
    commands = [m.command for m in msgs]
    assert commands[:5] == ["001", "002", "003", "004", "005"]
    assert {"251", "252", "253", "254", "255", "265", "266"} <= set(commands)
    assert commands[-1] == "376"
    welcome = msgs[0]
    assert welcome.source == "test.salon"
    assert welcome.params == ("alice", "Welcome to the salon IRC Network alice!al@127.0.0.1")
    assert one(msgs, "004").params[1] == "test.salon"
    assert conn.client.registered
    assert conn.client.prefix == "alice!al@127.0.0.1"


def test_isupport_tokens(net: Net) -> None:
    conn = net.connect()
    conn.send("NICK alice")
    conn.send("USER a 0 * :A")
    msgs = conn.messages()
    tokens = isupport(msgs)
    assert tokens["CASEMAPPING"] == "ascii"
    assert tokens["CHANTYPES"] == "#"
    assert tokens["PREFIX"] == "(ov)@+"
    assert tokens["CHANMODES"] == "beI,k,l,CMRimnst"
    assert tokens["STATUSMSG"] == "@+"
    assert int(tokens["NICKLEN"]) >= 30
    for key in ("CHANNELLEN", "TOPICLEN", "AWAYLEN", "KICKLEN", "MODES", "MONITOR"):
        assert int(tokens[key]) > 0, key
    targmax = dict(item.partition(":")[::2] for item in tokens["TARGMAX"].split(","))
    assert targmax["PRIVMSG"] == targmax["NOTICE"] == "4"
    assert "NAMES" in targmax and "WHOIS" in targmax
    assert set("CTU") <= set(tokens["ELIST"])
    assert tokens["EXCEPTS"] == "e"
    assert tokens["INVEX"] == "I"
    assert tokens["BOT"] == "B"
    assert tokens["NETWORK"] == "salon"
    for flag in ("WHOX", "UTF8ONLY"):
        assert tokens[flag] == "", flag
    for m in msgs:
        if m.command == "005":
            # "<nick> tokens... :are supported by this server", at most 13 tokens, 512 bytes.
            assert m.params[-1] == "are supported by this server"
            assert len(m.params) - 2 <= 13
            assert len(m.serialize()) <= 512


def test_isupport_follows_config() -> None:
    net = Net(server={"network": "Example"}, limits={"nicklen": 40, "topiclen": 300})
    conn = net.connect()
    conn.send("NICK n")
    conn.send("USER n 0 * :n")
    tokens = isupport(conn.messages())
    assert tokens["NETWORK"] == "Example"
    assert tokens["NICKLEN"] == "40"
    assert tokens["TOPICLEN"] == "300"


def test_cap_ls_302_req_end(net: Net) -> None:
    conn = net.connect()
    conn.send("CAP LS 302")
    lines = find(conn.messages(), "CAP")
    # CAP 3.2: long lists are split; every line but the last has "*" before the list.
    assert all(m.params[:3] == ("*", "LS", "*") for m in lines[:-1])
    assert lines[-1].params[:2] == ("*", "LS") and len(lines[-1].params) == 3
    offered = " ".join(m.params[-1] for m in lines).split()
    for cap in ("message-tags", "server-time", "echo-message", "labeled-response", "batch"):
        assert cap in offered
    conn.send("NICK alice")
    conn.send("USER a 0 * :A")
    conn.nothing()  # registration waits for CAP END
    conn.send("CAP REQ :server-time echo-message")
    ack = one(conn.messages(), "CAP")
    assert ack.params[1:] == ("ACK", "server-time echo-message")
    conn.send("CAP REQ :no-such-cap")
    assert one(conn.messages(), "CAP").params[1:] == ("NAK", "no-such-cap")
    conn.send("CAP REQ :-cap-notify")  # CAP 3.2: a 302 client cannot turn it off
    assert one(conn.messages(), "CAP").params[1:] == ("NAK", "-cap-notify")
    conn.send("CAP LIST")
    enabled = one(conn.messages(), "CAP").params[-1].split()
    assert {"server-time", "echo-message", "cap-notify"} <= set(enabled)
    conn.send("CAP END")
    assert conn.numerics()[0] == "001"


def test_cap_req_removal_changes_what_is_sent(net: Net) -> None:
    alice = net.register("alice", caps=["server-time"])
    alice.send("PRIVMSG alice :one")
    assert alice.lines()[0].startswith("@time=")
    alice.send("CAP REQ :-server-time")
    assert alice.lines() == [":test.salon CAP alice ACK -server-time"]
    alice.send("PRIVMSG alice :two")
    assert alice.lines() == [":alice!alice@127.0.0.1 PRIVMSG alice two"]


def test_cap_unknown_subcommand(net: Net) -> None:
    conn = net.connect()
    conn.send("CAP BOGUS")
    assert conn.numerics() == ["410"]


def test_nick_in_use_and_erroneous(net: Net) -> None:
    net.register("alice")
    conn = net.connect()
    conn.send("NICK alice")
    assert conn.lines() == [":test.salon 433 * alice :Nickname is already in use"]
    conn.send("NICK ALICE")
    assert conn.numerics() == ["433"]
    for bad in ("1abc", "-x", "a" * 31, "#chan", "nick!", "nick@host", "nick.name"):
        conn.send(f"NICK {bad}")
        assert conn.numerics() == ["432"], bad
    conn.send("NICK")
    assert conn.numerics() == ["431"]
    conn.send("NICK a" + "b" * 29)  # exactly NICKLEN
    conn.send("USER x 0 * :x")
    assert conn.numerics()[0] == "001"


def test_unregistered_nick_is_held_and_released(net: Net) -> None:
    first = net.connect()
    first.send("NICK held")
    second = net.connect()
    second.send("NICK held")
    assert second.numerics() == ["433"]
    first.send("NICK other")
    second.send("NICK held")
    second.send("USER h 0 * :h")
    assert second.numerics()[0] == "001"


def test_password_required() -> None:
    net = Net(server={"password": "sesame"})
    for attempt in (None, "wrong"):
        conn = net.connect()
        if attempt:
            conn.send(f"PASS {attempt}")
        conn.send("NICK x")
        conn.send("USER x 0 * :x")
        assert conn.lines() == [
            ":test.salon 464 x :Password incorrect",
            "ERROR :Closing Link: 127.0.0.1 (Bad password)",
        ]
        assert net.is_closed(conn)
        assert "x" not in net.server.nicks
    good = net.connect()
    good.send("PASS sesame")
    good.send("NICK x")
    good.send("USER x 0 * :x")
    assert good.numerics()[0] == "001"


def test_reregistration_refused(net: Net) -> None:
    alice = net.register("alice")
    alice.send("USER a 0 * :A")
    assert alice.numerics() == ["462"]
    alice.send("PASS x")
    assert alice.numerics() == ["462"]
    alice.send("USER a")
    assert alice.numerics() == ["461"]


def test_451_before_registration(net: Net) -> None:
    conn = net.connect()
    for line in ("JOIN #c", "PRIVMSG x :y", "WHOIS x", "FOOBAR"):
        conn.send(line)
        assert conn.lines() == [":test.salon 451 * :You have not registered"], line
    conn.send("PING tok")
    assert conn.lines() == [":test.salon PONG test.salon tok"]


@pytest.mark.parametrize(
    ("line", "numeric"),
    [
        ("NICK :a b", "432"),
        ("NICK ::x", "432"),
        ("WHOIS :a b", "401"),
        ("JOIN :#a b", "403"),
        ("JOIN #\x1b[2Jclear", "403"),  # control characters: not in a channel name
        ("JOIN #a\tb", "403"),
        ("JOIN #bell\x07", "403"),
        ("JOIN #a\u009bb", "403"),  # C1 CSI
        ("JOIN #a\u202eb", "403"),  # right-to-left override
        ("JOIN #a\u200bb", "403"),  # zero-width space
        ("PART :#a b", "403"),
        ("TOPIC :#a b", "403"),
        ("MODE :a b", "401"),
        ("NAMES :#a b", "366"),
        ("WHO :a b", "315"),
        ("WHOWAS :a b", "406"),
        ("HELP :a b", "524"),
        ("TIME :a b", "402"),
    ],
)
def test_replies_echoing_unsafe_words_still_arrive(net: Net, line: str, numeric: str) -> None:
    alice = net.register("alice")
    alice.send(line)
    assert numeric in alice.numerics()


def test_421_unknown_command(net: Net) -> None:
    alice = net.register("alice")
    alice.send("FROBNICATE a b")
    assert alice.lines() == [":test.salon 421 alice FROBNICATE :Unknown command"]


def test_461_not_enough_parameters(net: Net) -> None:
    alice = net.register("alice")
    for line in ("JOIN", "KICK #c", "OPER x", "WHOIS", "MODE"):
        alice.send(line)
        msg = one(alice.messages(), "461")
        assert msg.params[1] == line.split()[0], line


def test_ping_pong(net: Net) -> None:
    alice = net.register("alice")
    alice.send("PING :hello there")
    assert alice.lines() == [":test.salon PONG test.salon :hello there"]


def test_handler_crash_is_400_not_a_traceback(net: Net) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("secret detail")

    net.server.commands = {**COMMANDS, "BOOM": Command(boom)}
    alice = net.register("alice")
    alice.send("BOOM")
    lines = alice.lines()
    assert lines == [":test.salon 400 alice BOOM :Internal error"]
    alice.send("PING x")
    assert alice.numerics() == ["PONG"]


# ==================================================================================
# Channels
# ==================================================================================


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


# ==================================================================================
# Modes
# ==================================================================================


def test_user_modes(net: Net) -> None:
    alice = net.register("alice")
    net.register("bob")
    alice.send("MODE alice")
    assert alice.lines() == [":test.salon 221 alice +"]
    alice.send("MODE alice +iwB")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE alice +iwB"]
    alice.send("MODE alice")
    assert alice.lines() == [":test.salon 221 alice +Biw"]
    alice.send("MODE alice +i")  # no change, no reply
    alice.nothing()
    alice.send("MODE alice -w")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE alice -w"]
    alice.send("MODE alice +o")  # opers only via OPER
    alice.nothing()
    assert alice.client.oper is None
    alice.send("MODE alice +Z")
    assert alice.numerics() == ["501"]
    alice.send("MODE bob +i")
    assert alice.numerics() == ["502"]
    alice.send("MODE nobody")
    assert alice.numerics() == ["401"]


def test_bot_mode_shows(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE alice +B")
    bob.send("WHOIS alice")
    assert one(bob.messages(), "335").params[1] == "alice"
    bob.send("WHO #c")
    flags = {m.params[5]: m.params[6] for m in find(bob.messages(), "352")}
    assert flags == {"alice": "H@B", "bob": "H"}
    tagged = net.register("tagged", caps=["message-tags"])
    tagged.send("JOIN #c")
    tagged.lines()
    alice.send("PRIVMSG #c :beep")
    assert "bot" in one(tagged.messages(), "PRIVMSG").tags


def test_channel_mode_query(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c")
    assert alice.lines() == [
        ":test.salon 324 alice #c +nt",
        f":test.salon 329 alice #c {int(START)}",
    ]
    alice.send("MODE #none")
    assert alice.numerics() == ["403"]


@pytest.mark.parametrize("flag", list("mnstiC"))
def test_channel_flag_modes(net: Net, flag: str) -> None:
    alice, bob = pair(net)
    sign = "-" if flag in "nt" else "+"
    alice.send(f"MODE #c {sign}{flag}")
    change = f":alice!alice@127.0.0.1 MODE #c {sign}{flag}"
    assert alice.lines() == [change]
    assert bob.lines() == [change]
    alice.send(f"MODE #c {sign}{flag}")  # no change: nothing at all
    alice.nothing()
    bob.send(f"MODE #c {'+' if sign == '-' else '-'}{flag}")
    assert bob.lines() == [":test.salon 482 bob #c :You're not channel operator"]


def test_channel_modes_combined_and_params(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +mlk-t 5 key")
    change = ":alice!alice@127.0.0.1 MODE #c +mlk-t 5 key"
    assert alice.lines() == [change]
    assert bob.lines() == [change]
    alice.send("MODE #c +l abc")
    assert alice.numerics() == ["696"]
    alice.send("MODE #c +k")
    assert alice.numerics() == ["461"]
    alice.send("MODE #c -lk *")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c -lk *"]
    alice.send("MODE #c +X")
    assert alice.lines() == [":test.salon 472 alice X :is an unknown mode char to me"]
    carol = net.register("carol")
    carol.send("MODE #c +m")
    assert carol.numerics() == ["442"]


def test_channel_modes_max_four_per_line(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c +bbbbb a b c d e")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +bbbb a!*@* b!*@* c!*@* d!*@*"]


def test_op_and_voice(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +o bob")
    assert bob.lines() == [":alice!alice@127.0.0.1 MODE #c +o bob"]
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +o bob"]
    bob.send("MODE #c -o+v alice alice")
    assert alice.lines() == [":bob!bob@127.0.0.1 MODE #c -o+v alice alice"]
    alice.send("NAMES #c")
    assert one(alice.messages(), "353").params[-1] == "+alice @bob"
    alice.send("MODE #c +o alice")
    assert alice.numerics() == ["482"]
    bob.lines()
    bob.send("MODE #c +o nobody")
    assert bob.numerics() == ["401"]
    net.register("carol")
    bob.send("MODE #c +v carol")
    assert bob.numerics() == ["441"]


@pytest.mark.parametrize(
    ("mode", "entry", "end", "text"),
    [
        ("b", "367", "368", "End of channel ban list"),
        ("e", "348", "349", "End of channel exception list"),
        ("I", "346", "347", "End of channel invite list"),
    ],
)
def test_list_modes(net: Net, mode: str, entry: str, end: str, text: str) -> None:
    alice, bob = pair(net)
    alice.send(f"MODE #c {mode}")
    assert alice.lines() == [f":test.salon {end} alice #c :{text}"]
    net.advance(7)
    alice.send(f"MODE #c +{mode} *!*@example.com")
    assert bob.lines() == [f":alice!alice@127.0.0.1 MODE #c +{mode} *!*@example.com"]
    alice.send(f"MODE #c +{mode} *!*@EXAMPLE.com")  # already there (casefolded)
    alice.lines()
    bob.send(f"MODE #c {mode}")  # anyone may look
    assert bob.lines() == [
        f":test.salon {entry} bob #c *!*@example.com alice!alice@127.0.0.1 {int(START + 7)}",
        f":test.salon {end} bob #c :{text}",
    ]
    bob.send(f"MODE #c -{mode} *!*@example.com")
    assert bob.numerics() == ["482"]
    alice.send(f"MODE #c -{mode} *!*@example.com")
    assert alice.lines() == [f":alice!alice@127.0.0.1 MODE #c -{mode} *!*@example.com"]
    alice.send(f"MODE #c {mode}")
    assert alice.numerics() == [end]


@pytest.mark.parametrize("mask", [":bad mask", "::colon"])
def test_list_mode_entries_are_all_listable(net: Net, mask: str) -> None:
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.send(f"MODE #c +b {mask}")
    alice.send("MODE #c +b good")
    alice.lines()
    alice.send("MODE #c b")
    assert len(find(alice.messages(), "367")) == len(net.server.channels["#c"].bans)


def test_list_mode_limit() -> None:
    net = Net(limits={"max_list_entries": 2})
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.send("MODE #c +bbb a b c")
    msgs = alice.messages()
    assert one(msgs, "478").params[1:3] == ("#c", "c!*@*")
    assert one(msgs, "MODE").params == ("#c", "+bb", "a!*@*", "b!*@*")


# ==================================================================================
# Messages
# ==================================================================================


def test_privmsg_to_nick_and_channel(net: Net) -> None:
    alice, bob, carol = trio(net)
    alice.send("PRIVMSG bob :hi bob")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG bob :hi bob"]
    alice.nothing()
    carol.nothing()
    alice.send("PRIVMSG #c :hi all")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c :hi all"]
    assert carol.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c :hi all"]
    alice.nothing()  # no echo without echo-message
    alice.send("NOTICE bob,#c :notice")
    assert bob.lines() == [
        ":alice!alice@127.0.0.1 NOTICE bob notice",
        ":alice!alice@127.0.0.1 NOTICE #c notice",
    ]
    alice.send("PRIVMSG BOB :case")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG BOB case"]


def test_privmsg_errors(net: Net) -> None:
    alice = net.register("alice")
    cases = {
        "PRIVMSG nobody :x": "401",
        "PRIVMSG #nowhere :x": "403",
        "PRIVMSG": "411",
        "PRIVMSG alice": "412",
        "PRIVMSG alice :": "412",
        "PRIVMSG a,b,c,d,e :x": "407",
    }
    for line, numeric in cases.items():
        alice.send(line)
        assert alice.numerics() == [numeric], line


def test_statusmsg(net: Net) -> None:
    alice, bob, carol = trio(net)
    dave = net.register("dave")
    dave.send("JOIN #c")
    alice.send("MODE #c +v bob")
    for conn in (alice, bob, carol, dave):
        conn.lines()
    carol.send("PRIVMSG @#c :ops only")
    assert alice.lines() == [":carol!carol@127.0.0.1 PRIVMSG @#c :ops only"]
    bob.nothing()
    dave.nothing()
    carol.send("NOTICE +#c :voice and up")
    assert alice.lines() == [":carol!carol@127.0.0.1 NOTICE +#c :voice and up"]
    assert bob.lines() == [":carol!carol@127.0.0.1 NOTICE +#c :voice and up"]
    dave.nothing()
    carol.nothing()


def test_no_external_messages(net: Net) -> None:
    alice, _ = pair(net)
    carol = net.register("carol")
    carol.send("PRIVMSG #c :from outside")
    assert carol.lines() == [":test.salon 404 carol #c :Cannot send to channel (+n)"]
    alice.nothing()
    alice.send("MODE #c -n")
    alice.lines()
    carol.send("PRIVMSG #c :from outside")
    assert alice.lines() == [":carol!carol@127.0.0.1 PRIVMSG #c :from outside"]


def test_moderated(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +m")
    alice.lines()
    bob.lines()
    bob.send("PRIVMSG #c :muted")
    assert bob.lines() == [":test.salon 404 bob #c :Cannot send to channel (+m)"]
    alice.nothing()
    alice.send("MODE #c +v bob")
    alice.lines()
    bob.lines()
    bob.send("PRIVMSG #c :voiced")
    bob.nothing()
    assert alice.lines() == [":bob!bob@127.0.0.1 PRIVMSG #c voiced"]


def test_no_ctcp(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +C")
    alice.lines()
    bob.lines()
    bob.send("PRIVMSG #c :\x01VERSION\x01")
    assert bob.numerics() == ["404"]
    bob.send("PRIVMSG #c :\x01ACTION waves\x01")
    assert alice.lines() == [":bob!bob@127.0.0.1 PRIVMSG #c :\x01ACTION waves\x01"]


def test_notice_never_gets_error_replies(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +m")
    alice.lines()
    bob.lines()
    carol = net.register("carol")
    for line in (
        "NOTICE nobody :x",
        "NOTICE #nowhere :x",
        "NOTICE #c :outside +n",
        "NOTICE",
        "NOTICE alice",
        "NOTICE a,b,c,d,e :x",
    ):
        carol.send(line)
        carol.nothing()
    bob.send("NOTICE #c :moderated")
    bob.nothing()
    alice.nothing()
    alice.send("AWAY :gone")
    alice.lines()
    carol.send("NOTICE alice :no away reply")
    carol.nothing()


def test_away(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("AWAY :out to lunch")
    assert alice.lines() == [":test.salon 306 alice :You have been marked as being away"]
    bob.send("PRIVMSG alice :hello?")
    assert bob.lines() == [":test.salon 301 bob alice :out to lunch"]
    assert alice.lines() == [":bob!bob@127.0.0.1 PRIVMSG alice hello?"]
    bob.send("WHOIS alice")
    assert one(bob.messages(), "301").params[-1] == "out to lunch"
    bob.send("USERHOST alice")
    assert bob.lines() == [":test.salon 302 bob alice=-alice@127.0.0.1"]
    bob.send("WHO alice")
    assert one(bob.messages(), "352").params[6] == "G@"
    alice.send("AWAY")
    assert alice.lines() == [":test.salon 305 alice :You are no longer marked as being away"]
    bob.send("PRIVMSG alice :back?")
    bob.nothing()


def test_away_notify(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob", caps=["away-notify"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
        conn.lines()
    alice.lines()
    alice.send("AWAY :brb")
    assert bob.lines() == [":alice!alice@127.0.0.1 AWAY brb"]
    alice.send("AWAY")
    assert bob.lines() == [":alice!alice@127.0.0.1 AWAY"]


def test_nick_change_broadcast(net: Net) -> None:
    alice, bob = pair(net)
    loner = net.register("loner")
    alice.send("NICK alicia")
    change = ":alice!alice@127.0.0.1 NICK alicia"
    assert alice.lines() == [change]
    assert bob.lines() == [change]
    loner.nothing()
    assert "alice" not in net.server.nicks
    bob.send("PRIVMSG alicia :found you")
    assert alice.lines() == [":bob!bob@127.0.0.1 PRIVMSG alicia :found you"]
    alice.send("NICK Alicia")  # case change only
    assert alice.lines() == [":alicia!alice@127.0.0.1 NICK Alicia"]
    alice.send("NICK bob")
    assert alice.numerics() == ["433"]
    bob.send("WHOWAS alice")
    assert one(bob.messages(), "314").params[1] == "alice"


def test_monitor_ignores_a_change_of_case(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob")
    alice.send("MONITOR + bob")
    alice.lines()
    bob.send("NICK BOB")
    alice.nothing()
    bob.send("NICK robert")
    assert alice.numerics() == ["731"]


def test_quit(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("JOIN #d")
    bob.send("JOIN #d")  # two shared channels: one QUIT
    alice.lines()
    bob.lines()
    loner = net.register("loner")
    alice.send("QUIT :so long")
    assert alice.lines() == ["ERROR :Closing Link: 127.0.0.1 (Quit: so long)"]
    assert bob.lines() == [":alice!alice@127.0.0.1 QUIT :Quit: so long"]
    loner.nothing()
    assert net.is_closed(alice)
    assert alice.client.id not in net.server.clients
    assert "alice" not in net.server.nicks
    alice.send("PRIVMSG bob :ghost")  # input after quitting is ignored
    bob.nothing()
    alice.nothing()


def test_quit_unregistered(net: Net) -> None:
    conn = net.connect()
    conn.send("QUIT")
    assert conn.lines() == ["ERROR :Closing Link: 127.0.0.1 (Quit)"]
    assert net.is_closed(conn)
    assert net.server.unregistered == 0


def test_disconnected_by_the_shell(net: Net) -> None:
    alice, bob = pair(net)
    net.server.disconnected(alice.client, net.now)
    assert bob.lines() == [":alice!alice@127.0.0.1 QUIT :Connection closed"]
    effects = net.server.take_effects()
    assert [e for e in effects if isinstance(e, Close)] == [Close(alice.client)]


def test_shutdown(net: Net) -> None:
    alice, bob = pair(net)
    waiting = net.connect()
    net.server.shutdown(net.now)
    net.collect_effects()
    for conn in (alice, bob, waiting):
        assert conn.lines() == ["ERROR :Server shutting down"]  # no QUITs about the others
        assert net.is_closed(conn)
    assert net.server.clients == {}
    assert net.server.channels == {}


# ==================================================================================
# IRCv3: labeled-response, echo-message, server-time, message-tags
# ==================================================================================

ALL_TAG_CAPS = ["labeled-response", "batch", "message-tags", "server-time", "echo-message"]


def test_labeled_response_ack_single_and_batch(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("@label=a1 PONG x")
    assert alice.lines() == ["@label=a1 :test.salon ACK"]
    alice.send("@label=a2 PING tok")
    assert alice.lines() == ["@label=a2 :test.salon PONG test.salon tok"]
    alice.send("@label=a3 MOTD")
    msgs = alice.messages()
    start, *inner, end = msgs
    assert start.command == "BATCH" and start.tags == {"label": "a3"}
    ref = start.params[0][1:]
    assert start.params == ("+" + ref, "labeled-response")
    assert [m.command for m in inner] == ["375", "372", "376"]
    assert all(m.tags == {"batch": ref} for m in inner)
    assert end.command == "BATCH" and end.params == ("-" + ref,)
    alice.send("@label=a4 NOSUCHCMD")
    assert alice.lines() == ["@label=a4 :test.salon 421 alice NOSUCHCMD :Unknown command"]


def test_labeled_response_not_without_the_cap(net: Net) -> None:
    alice = net.register("alice")
    alice.send("@label=x PING tok")
    assert alice.lines() == [":test.salon PONG test.salon tok"]
    alice.send("@label=x PONG tok")
    alice.nothing()


def test_labeled_response_without_message_tags(net: Net) -> None:
    # The label tag belongs to labeled-response itself, like time to server-time.
    alice = net.register("alice", caps=["labeled-response", "batch"])
    alice.send("@label=l1 PONG x")
    assert alice.lines() == ["@label=l1 :test.salon ACK"]
    alice.send("@label=l2 PING x")
    assert alice.lines() == ["@label=l2 :test.salon PONG test.salon x"]
    alice.send("@label=l3 MOTD")
    msgs = alice.messages()
    assert msgs[0].tags == {"label": "l3"}
    assert msgs[1].tags == {"batch": msgs[0].params[0][1:]}


def test_labeled_response_without_batch_is_unlabeled_when_long(net: Net) -> None:
    alice = net.register("alice", caps=["labeled-response"])
    alice.send("@label=l1 PING x")
    assert alice.lines() == ["@label=l1 :test.salon PONG test.salon x"]
    alice.send("@label=l2 MOTD")
    msgs = alice.messages()
    assert [m.command for m in msgs] == ["375", "372", "376"]
    assert all(not m.tags for m in msgs)


def test_labeled_invalid_utf8(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send(b"@label=u8 PRIVMSG #c :\xff")
    fail = one(alice.messages(), "FAIL")
    assert fail.tags["label"] == "u8"
    assert fail.params[:2] == ("PRIVMSG", "INVALID_UTF8")


def test_echo_message(net: Net) -> None:
    alice = net.register("alice", caps=["echo-message"])
    bob = net.register("bob")
    alice.send("PRIVMSG bob :echoed")
    assert alice.lines() == [":alice!alice@127.0.0.1 PRIVMSG bob echoed"]
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG bob echoed"]
    bob.send("PRIVMSG alice :not echoed")
    bob.nothing()
    alice.lines()
    alice.send("PRIVMSG nobody :x")  # a failed message is not echoed
    assert alice.numerics() == ["401"]


def test_echo_message_labeled(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    net.register("bob")
    alice.send("@label=e1 PRIVMSG bob :hi")
    msg = one(alice.messages(), "PRIVMSG")
    assert msg.tags["label"] == "e1"
    assert re.fullmatch(TIME_RX, msg.tags["time"])
    assert msg.tags["msgid"]


def test_server_time_only_with_the_cap(net: Net) -> None:
    net.advance(0.25)
    alice = net.register("alice")
    timed = net.register("timed", caps=["server-time"])
    tagged = net.register("tagged", caps=["message-tags"])
    plain = net.register("plain")
    for conn in (alice, timed, tagged, plain):
        conn.send("JOIN #c")
    for conn in (alice, timed, tagged, plain):
        conn.lines()
    alice.send("PRIVMSG #c :when")
    stamp = format_time(net.now)
    assert stamp == "1970-01-01T00:16:40.250Z"
    assert timed.lines() == [f"@time={stamp} :alice!alice@127.0.0.1 PRIVMSG #c when"]
    assert plain.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c when"]
    tags = one(tagged.messages(), "PRIVMSG").tags
    assert "time" not in tags and "msgid" in tags


def test_message_tags_client_only_relay(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    carol = net.register("carol")
    for conn in (alice, bob, carol):
        conn.send("JOIN #c")
    for conn in (alice, bob, carol):
        conn.lines()
    alice.send("@+draft/reply=abc;+example.com/x=a\\sb;label=nope;msgid=forged PRIVMSG #c :re")
    tags = one(bob.messages(), "PRIVMSG").tags
    assert tags["+draft/reply"] == "abc"
    assert tags["+example.com/x"] == "a b"
    assert "label" not in tags
    assert tags["msgid"] != "forged"
    assert carol.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c re"]


def test_client_tags_with_invalid_keys_are_not_relayed(net: Net) -> None:
    """message-tags: a key is [<vendor> '/'] <key_name>, a key_name of letters, digits and
    hyphens; others are dropped, the valid ones beside them still go."""
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
        conn.lines()
    alice.send("@+=1;+é=2;+a/=3;+x.y/z_w=4;+ok=5;+example.com/fine-1=6 TAGMSG #c")
    tags = one(bob.messages(), "TAGMSG").tags
    assert {k for k in tags if k[0] == "+"} == {"+ok", "+example.com/fine-1"}, tags


def test_a_non_ascii_channel_counts_in_bytes_for_the_512_limit(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob")
    name = "#" + "é" * 30
    for conn in (alice, bob):
        conn.send(f"JOIN {name}")
        conn.lines()
    room = 512 - len(f":alice!alice@127.0.0.1 PRIVMSG {name} :\r\n".encode())
    alice.send(f"PRIVMSG {name} :a {'x' * (room - 1)}")  # a space: relayed with its ':'
    assert "417" in alice.numerics() and bob.lines() == []
    alice.send(f"PRIVMSG {name} :a {'x' * (room - 2)}")
    assert len(bob.lines()[0].encode()) + 2 == 512


def test_tagmsg_only_to_message_tags_clients(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    carol = net.register("carol")
    for conn in (alice, bob, carol):
        conn.send("JOIN #c")
    for conn in (alice, bob, carol):
        conn.lines()
    alice.send("@+draft/typing=active TAGMSG #c")
    msg = one(bob.messages(), "TAGMSG")
    assert msg.params == ("#c",)
    assert msg.tags["+draft/typing"] == "active"
    carol.nothing()
    alice.send("@+draft/typing=active TAGMSG carol")
    carol.nothing()
    alice.nothing()
    alice.send("@+draft/typing=done TAGMSG bob")
    assert one(bob.messages(), "TAGMSG").tags["+draft/typing"] == "done"


def test_msgids_are_unique(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob", caps=["message-tags"])
    for _ in range(3):
        alice.send("PRIVMSG bob :x")
    ids = [m.tags["msgid"] for m in bob.messages()]
    assert len(set(ids)) == 3


# ==================================================================================
# Queries
# ==================================================================================


def test_monitor(net: Net) -> None:
    alice = net.register("alice")
    net.register("bob")
    alice.send("MONITOR + bob,Carol")
    assert alice.lines() == [
        ":test.salon 730 alice bob!bob@127.0.0.1",
        ":test.salon 731 alice Carol",
    ]
    alice.send("MONITOR L")
    assert alice.lines() == [
        ":test.salon 732 alice bob,carol",
        ":test.salon 733 alice :End of MONITOR list",
    ]
    carol = net.register("carol")
    assert alice.lines() == [":test.salon 730 alice carol!carol@127.0.0.1"]
    alice.send("MONITOR S")
    assert alice.lines() == [":test.salon 730 alice bob!bob@127.0.0.1,carol!carol@127.0.0.1"]
    carol.send("QUIT")
    assert alice.lines() == [":test.salon 731 alice carol"]
    alice.send("MONITOR - bob")
    alice.send("MONITOR L")
    assert alice.lines() == [
        ":test.salon 732 alice carol",
        ":test.salon 733 alice :End of MONITOR list",
    ]
    alice.send("MONITOR C")
    alice.send("MONITOR L")
    assert alice.lines() == [":test.salon 733 alice :End of MONITOR list"]
    assert net.server.monitors == {}


def test_monitor_nick_change_and_limit() -> None:
    net = Net(limits={"monitor": 2})
    alice = net.register("alice")
    bob = net.register("bob")
    alice.send("MONITOR + bob,robert,zed")
    msgs = alice.messages()
    assert one(msgs, "734").params[1:3] == ("2", "zed")
    bob.send("NICK robert")
    assert alice.lines() == [
        ":test.salon 731 alice bob",
        ":test.salon 730 alice robert!bob@127.0.0.1",
    ]


def test_monitor_cleared_when_watcher_leaves(net: Net) -> None:
    alice = net.register("alice")
    alice.send("MONITOR + bob")
    alice.send("QUIT")
    assert net.server.monitors == {}
    net.register("bob")  # nobody left to notify; nothing breaks


def test_who(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("WHO #c")
    assert alice.lines() == [
        ":test.salon 352 alice #c alice 127.0.0.1 test.salon alice H@ :0 alice real",
        ":test.salon 352 alice #c bob 127.0.0.1 test.salon bob H :0 bob real",
        ":test.salon 315 alice #c :End of WHO list",
    ]
    alice.send("WHO nobody")
    assert alice.lines() == [":test.salon 315 alice nobody :End of WHO list"]
    alice.send("WHO b*")
    assert [m.params[5] for m in find(alice.messages(), "352")] == ["bob"]


def test_whox_fields_and_token(net: Net) -> None:
    alice, _ = pair(net)
    net.advance(42)
    alice.send("WHO #c %tcuihsnfdlaor,123")
    msgs = alice.messages()
    rows = {m.params[7]: m.params[1:] for m in find(msgs, "354")}
    assert rows["bob"] == (
        "123",
        "#c",
        "bob",
        "255.255.255.255",  # another user's IP is hidden
        "127.0.0.1",
        "test.salon",
        "bob",
        "H",
        "0",
        "42",
        "0",
        "n/a",
        "bob real",
    )
    assert rows["alice"][3] == "127.0.0.1"  # one's own IP is shown
    assert msgs[-1].command == "315"
    alice.send("WHO bob %nf")
    assert alice.lines()[0] == ":test.salon 354 alice bob H"
    alice.send("WHO bob %tn")  # no token given: 0
    assert alice.lines()[0] == ":test.salon 354 alice 0 bob"


def test_who_hides_invisible_users(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob")
    bob.send("MODE bob +i")
    alice.send("WHO *")
    assert [m.params[5] for m in find(alice.messages(), "352")] == ["alice"]
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.lines()
    alice.send("WHO *")
    assert sorted(m.params[5] for m in find(alice.messages(), "352")) == ["alice", "bob"]


def test_who_does_not_leak_secret_channels(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #secret")
    alice.send("MODE #secret +s")
    bob = net.register("bob")
    bob.send("WHO alice")
    assert one(bob.messages(), "352").params[1] == "*"


def test_whois(net: Net) -> None:
    alice, bob = pair(net)
    net.advance(30)
    bob.send("WHOIS alice")
    msgs = bob.messages()
    assert [m.command for m in msgs] == ["311", "319", "312", "317", "318"]
    assert msgs[0].params == ("bob", "alice", "alice", "127.0.0.1", "*", "alice real")
    assert msgs[1].params == ("bob", "alice", "@#c")
    assert msgs[3].params[2:4] == ("30", str(int(START)))
    alice.send("WHOIS alice")
    assert "338" in alice.numerics()  # one's own actual host
    bob.send("WHOIS nobody")
    assert bob.lines() == [
        ":test.salon 401 bob nobody :No such nick/channel",
        ":test.salon 318 bob nobody :End of /WHOIS list",
    ]
    alice.send("JOIN #hidden")
    alice.send("MODE #hidden +s")
    bob.send("WHOIS alice")
    assert one(bob.messages(), "319").params[-1] == "@#c"


def test_ipv6_client(net: Net) -> None:
    alice = net.register("alice", ip="2001:db8::1")
    alice.send("JOIN #c")
    assert alice.lines()[0] == ":alice!alice@2001:db8::1 JOIN #c"
    alice.send("WHOIS alice")
    assert one(alice.messages(), "311").params[3] == "2001:db8::1"


@pytest.mark.parametrize(
    ("line", "numeric"),
    [("WHOIS alice", "311"), ("WHO #c", "352"), ("WHO alice %nh", "354"), ("WHOWAS gone", "314")],
)
def test_ipv6_loopback_client_is_visible(net: Net, line: str, numeric: str) -> None:
    alice = net.register("alice", ip="::1")
    alice.send("JOIN #c")
    gone = net.register("gone", ip="::1")
    gone.send("QUIT")
    bob = net.register("bob")
    bob.send(line)
    assert numeric in bob.numerics()


def test_whowas_after_quit(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob", user="bobu")
    net.advance(60)
    bob.send("QUIT")
    alice.send("WHOWAS bob")
    assert alice.lines() == [
        ":test.salon 314 alice bob bobu 127.0.0.1 * :bob real",
        ":test.salon 312 alice bob test.salon :Thu Jan 01 00:17:40 1970",
        ":test.salon 369 alice bob :End of WHOWAS",
    ]
    alice.send("WHOWAS nobody")
    assert alice.numerics() == ["406", "369"]


def test_userhost_and_ison(net: Net) -> None:
    alice = net.register("alice")
    net.register("bob")
    alice.send("USERHOST bob nobody alice")
    assert alice.lines() == [":test.salon 302 alice :bob=+bob@127.0.0.1 alice=+alice@127.0.0.1"]
    alice.send("ISON Bob nobody alice")
    assert alice.lines() == [":test.salon 303 alice :bob alice"]
    alice.send("ISON :bob alice")
    assert alice.lines() == [":test.salon 303 alice :bob alice"]
    alice.send("ISON nobody")
    assert alice.lines() == [":test.salon 303 alice :"]


def test_lusers_counts(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob")
    bob.send("MODE bob +i")
    bob.send("JOIN #c")
    net.connect()  # unregistered
    net.plain("pat")  # a plain-text user counts as a user
    alice.send("LUSERS")
    params = {m.command: m.params[1:] for m in alice.messages()}
    assert params["251"] == ("There are 2 users and 1 invisible on 1 servers",)
    assert params["252"][0] == "0"
    assert params["253"][0] == "1"
    assert params["254"][0] == "2"  # #c and #lobby
    assert params["255"] == ("I have 3 clients and 0 servers",)
    assert params["265"][:2] == ("3", "3")
    assert params["266"][:2] == ("3", "3")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("TIME", ["391"]),
        ("VERSION", ["351", "005", "005", "005"]),
        ("INFO", ["371", "371", "371", "374"]),
        ("ADMIN", ["256", "257", "258", "259"]),
        ("HELP", ["704", "705", "705", "705", "706"]),
        ("HELP join", ["704", "705", "706"]),
        ("HELP nonsense", ["524"]),
        ("LINKS", ["364", "365"]),
        ("MOTD", ["375", "372", "376"]),
        ("TIME other.server", ["402"]),
        ("VERSION test.salon", ["351", "005", "005", "005"]),
    ],
)
def test_server_queries(net: Net, line: str, expected: list[str]) -> None:
    alice = net.register("alice")
    alice.send(line)
    assert alice.numerics() == expected


def test_time_uses_the_injected_clock(net: Net) -> None:
    alice = net.register("alice")
    alice.send("TIME")
    assert one(alice.messages(), "391").params == (
        "alice",
        "test.salon",
        "Thursday January 01 1970 -- 00:16:40 +00:00",
    )


def test_no_motd() -> None:
    net = Net(server={"motd": ""})
    conn = net.connect()
    conn.send("NICK a")
    conn.send("USER a 0 * :a")
    assert conn.numerics()[-1] == "422"


def test_welcome_burst_puts_the_nick_only_where_it_goes() -> None:
    """The welcome burst is made from templates around a placeholder nick; a MOTD line
    that happens to contain the placeholder keeps it."""
    net = Net(server={"motd": "hello Nplaceholder0 there\nsecond line"})
    conn = net.connect()
    conn.send("NICK bob")
    conn.send("USER b 0 * :b")
    motd = [line for line in conn.lines() if " 372 " in line]
    assert motd == [
        ":test.salon 372 bob :- hello Nplaceholder0 there",
        ":test.salon 372 bob :- second line",
    ]


# ==================================================================================
# Operators
# ==================================================================================


@pytest.fixture(scope="module")
def oper_hash() -> str:
    return hash_password("letmein")


@pytest.fixture
def oper_net(oper_hash: str) -> Net:
    return Net(oper=[{"name": "root", "password": oper_hash}])


def test_oper_offload(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    alice.send("OPER root letmein")
    alice.nothing()  # the answer waits for the offloaded work
    assert len(net.pending) == 1
    effect = net.pending[0]
    assert isinstance(effect, Offload) and effect.client is alice.client
    assert alice.client.blocked
    alice.send("PING queued")  # waits behind OPER
    alice.nothing()
    net.pending.clear()
    result = effect.work()
    assert result is True
    net.server.complete(effect, result, net.now)
    assert alice.lines() == [
        ":test.salon 381 alice :You are now an IRC operator",
        ":alice!alice@127.0.0.1 MODE alice +o",
        ":test.salon PONG test.salon queued",
    ]
    assert alice.client.oper == "root"
    assert not alice.client.blocked


def test_offload_completed_after_disconnect(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    alice.send("OPER root letmein")
    net.server.disconnected(alice.client, net.now)
    alice.lines()
    net.run_offloads()  # completes for a closed client: no output, no error
    alice.nothing()
    assert alice.client.oper is None


@pytest.mark.parametrize("line", ["OPER root wrong", "OPER nobody letmein"])
def test_oper_refused(oper_net: Net, line: str) -> None:
    alice = oper_net.register("alice")
    alice.send(line)
    assert oper_net.run_offloads() == 1
    assert alice.lines() == [":test.salon 464 alice :Password incorrect"]
    assert alice.client.oper is None


def test_oper_labeled(oper_net: Net) -> None:
    alice = oper_net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("@label=op OPER root letmein")
    alice.nothing()
    oper_net.run_offloads()
    msgs = alice.messages()
    assert msgs[0].command == "BATCH" and msgs[0].tags["label"] == "op"
    assert [m.command for m in msgs[1:-1]] == ["381", "MODE"]


def test_kill_and_wallops_need_oper(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    bob = net.register("bob")
    bob.send("MODE bob +w")
    bob.lines()
    for line in ("KILL bob :go", "WALLOPS :hear ye"):
        alice.send(line)
        assert alice.lines() == [
            ":test.salon 481 alice :Permission Denied - You're not an IRC operator"
        ]
    bob.nothing()
    alice.send("OPER root letmein")
    net.run_offloads()
    alice.lines()
    alice.send("WALLOPS :hear ye")
    assert bob.lines() == [":alice!alice@127.0.0.1 WALLOPS :hear ye"]
    alice.nothing()  # alice lacks +w
    alice.send("KILL nobody :x")
    assert alice.numerics() == ["401"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    bob.send("JOIN #c")
    carol.lines()
    alice.send("KILL bob :spamming")
    assert bob.lines()[-1] == "ERROR :Closing Link: test.salon (Killed (alice (spamming)))"
    assert carol.lines() == [":bob!bob@127.0.0.1 QUIT :Killed (alice (spamming))"]
    assert net.is_closed(bob)
    carol.send("WHO alice")
    assert one(carol.messages(), "352").params[6] == "H*"
    carol.send("WHOIS alice")
    assert "313" in carol.numerics()
    carol.send("USERHOST alice")
    assert carol.lines() == [":test.salon 302 carol alice*=+alice@127.0.0.1"]
    carol.send("LUSERS")
    assert one(carol.messages(), "252").params[1] == "1"


# ==================================================================================
# Input limits and encodings
# ==================================================================================


def test_417_for_a_600_byte_line(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("PRIVMSG #c :" + "x" * 588)
    assert alice.lines() == [":test.salon 417 alice :Input line too long"]
    bob.nothing()
    alice.send("PRIVMSG #c :fine")  # the connection goes on
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c fine"]


def test_417_for_too_many_client_tags(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    alice.send("@+big=" + "v" * 5000 + " PING x")
    assert alice.numerics() == ["417"]


def test_endless_line_is_refused_and_discarded(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"PRIVMSG bob :" + b"x" * 9000)
    assert alice.numerics() == ["417"]
    alice.feed(b"y" * 100 + b"\r\nPING after\r\n")
    assert alice.lines() == [":test.salon PONG test.salon after"]


def test_lines_may_arrive_in_pieces(net: Net) -> None:
    alice = net.register("alice")
    for piece in (b"PI", b"NG a", b"b\r", b"\nPING c\nPING d\r\n"):
        alice.feed(piece)
    assert alice.lines() == [
        ":test.salon PONG test.salon ab",
        ":test.salon PONG test.salon c",
        ":test.salon PONG test.salon d",
    ]


def test_empty_lines_are_ignored(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"\r\n\n   \r\nPING x\r\n")
    assert alice.numerics() == ["PONG"]


def test_invalid_utf8(net: Net) -> None:
    alice, bob = pair(net)
    alice.send(b"PRIVMSG #c :caf\xe9")
    assert alice.lines() == [
        ":test.salon FAIL PRIVMSG INVALID_UTF8 :Message rejected: your client must use UTF-8"
    ]
    bob.nothing()
    alice.send("PRIVMSG #c :café")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c café"]


def test_nul_or_cr_inside_a_line_is_refused_with_a_reason(net: Net) -> None:
    """RFC 1459 2.3: a message ends at CR LF and contains neither, nor NUL. Such a line is
    neither relayed nor dropped silently."""
    alice, bob = pair(net)
    alice.send(b"PRIVMSG #c :split\rline")
    alice.send(b"PRIVMSG bob :nul\0inside")
    alice.send(b"@+x=1\0 TAGMSG #c")
    assert alice.lines() == [
        ":test.salon 400 alice PRIVMSG :Line contains a NUL or CR",
        ":test.salon 400 alice PRIVMSG :Line contains a NUL or CR",
        ":test.salon 400 alice * :Line contains a NUL or CR",
    ]
    bob.nothing()


# ==================================================================================
# Timers: registration and ping timeouts
# ==================================================================================


def test_registration_timeout() -> None:
    net = Net(limits={"registration_timeout": 10})
    conn = net.connect()
    conn.send("NICK slow")
    net.check_timeouts(9)
    conn.nothing()
    assert not net.is_closed(conn)
    net.check_timeouts(2)
    assert conn.lines() == ["ERROR :Closing Link: 127.0.0.1 (Registration timed out)"]
    assert net.is_closed(conn)
    assert "slow" not in net.server.nicks
    net.register("slow")


def test_ping_timeout() -> None:
    net = Net(limits={"ping_interval": 30, "ping_timeout": 20})
    alice, bob = pair(net)
    net.check_timeouts(29)
    alice.nothing()
    net.check_timeouts(2)
    assert alice.lines() == ["PING test.salon"]
    assert bob.lines() == ["PING test.salon"]
    alice.send("PONG test.salon")
    net.check_timeouts(19)
    assert not net.is_closed(bob)
    net.check_timeouts(2)
    assert bob.lines() == ["ERROR :Closing Link: 127.0.0.1 (Ping timeout: 52 seconds)"]
    assert net.is_closed(bob)
    assert alice.lines() == [":bob!bob@127.0.0.1 QUIT :Ping timeout: 52 seconds"]
    assert not net.is_closed(alice)


def test_any_line_answers_a_ping() -> None:
    net = Net(limits={"ping_interval": 30, "ping_timeout": 20})
    alice = net.register("alice")
    net.check_timeouts(31)
    assert alice.lines() == ["PING test.salon"]
    alice.send("PRIVMSG alice :still here")
    net.check_timeouts(25)
    assert not net.is_closed(alice)


def test_activity_postpones_the_ping() -> None:
    net = Net(limits={"ping_interval": 30, "ping_timeout": 20})
    alice = net.register("alice")
    for _ in range(5):
        net.advance(20)
        alice.send("PING keepalive")
        net.check_timeouts()
    assert alice.numerics() == ["PONG"] * 5


# ==================================================================================
# Flood control, RecvQ and SendQ
# ==================================================================================


def flood_net(**limits: int) -> Net:
    return Net(flood={"enabled": True, "rate": 1.0, "burst": 3}, limits=limits)


def test_flood_lines_beyond_burst_wait_for_tick() -> None:
    net = flood_net()
    alice = net.register("alice")
    alice.feed(b"".join(b"PING %d\r\n" % i for i in range(1, 6)))
    assert alice.lines() == [f":test.salon PONG test.salon {i}" for i in (1, 2, 3)]
    assert alice.client.throttled
    net.tick(0.5)
    alice.nothing()
    net.tick(0.6)
    assert alice.lines() == [":test.salon PONG test.salon 4"]
    net.tick(0.2)
    alice.nothing()
    net.tick(0.8)
    assert alice.lines() == [":test.salon PONG test.salon 5"]
    assert not alice.client.throttled
    assert net.server.throttled == set()


def test_flood_burst_refills() -> None:
    net = flood_net()
    alice = net.register("alice")
    alice.feed(b"PING a\r\n" * 3)
    assert len(alice.lines()) == 3
    net.tick(10)  # tokens refill up to the burst, not beyond
    alice.feed(b"PING b\r\n" * 5)
    assert len(alice.lines()) == 3


def test_flood_registration_is_not_throttled() -> None:
    net = flood_net()
    conn = net.connect()
    conn.feed(b"CAP LS 302\r\nCAP REQ :server-time\r\nNICK a\r\nUSER a 0 * :a\r\nCAP END\r\n")
    assert "001" in conn.numerics()


def test_excess_flood() -> None:
    net = flood_net(recvq=1024)
    alice, bob = pair(net)
    net.tick(5)
    bob.feed(b"PING x\r\n" * 3)
    bob.lines()
    bob.feed(b"PRIVMSG alice :" + b"x" * 100 + b"\r\n")
    assert bob.client.throttled and not net.is_closed(bob)
    bob.feed((b"PRIVMSG alice :" + b"x" * 100 + b"\r\n") * 10)
    assert bob.lines() == ["ERROR :Closing Link: 127.0.0.1 (Excess Flood)"]
    assert net.is_closed(bob)
    assert alice.lines() == [":bob!bob@127.0.0.1 QUIT :Excess Flood"]


def test_flood_exempt_cidr() -> None:
    net = Net(flood={"enabled": True, "rate": 1.0, "burst": 3, "exempt": ["10.1.0.0/16"]})
    exempt = net.register("exempt", ip="10.1.2.3")
    limited = net.register("limited", ip="10.2.0.1")
    exempt.feed(b"PING x\r\n" * 50)
    limited.feed(b"PING x\r\n" * 50)
    assert len(exempt.lines()) == 50
    assert len(limited.lines()) == 3
    assert not exempt.client.throttled
    assert limited.client.throttled


def test_flood_disabled_never_throttles(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"PING x\r\n" * 100)
    assert len(alice.lines()) == 100


def test_recvq_exceeded_without_flood() -> None:
    net = Net(limits={"recvq": 1024})
    alice = net.register("alice")
    alice.send("OPER a b")  # blocks input until the offload completes
    # While input is blocked the shell stops reading; what it holds is still bounded.
    alice.feed(b"PING x\r\n" * 200)
    assert not net.is_closed(alice)
    alice.feed(b"PING x\r\n" * 200_000)
    assert alice.lines()[-1] == "ERROR :Closing Link: 127.0.0.1 (RecvQ exceeded)"


def test_sendq_exceeded() -> None:
    net = Net(limits={"sendq": 4096})
    alice, bob = pair(net)
    carol = net.register("carol")
    carol.send("JOIN #c")
    carol.lines()
    alice.lines()
    for _ in range(20):
        alice.send("PRIVMSG bob :" + "x" * 300)
    assert net.is_closed(bob)
    # The backlog is thrown away; only the ERROR is left to send.
    assert bob.client.outbox == [b"ERROR :Closing Link: 127.0.0.1 (SendQ exceeded)\r\n"]
    assert ":bob!bob@127.0.0.1 QUIT :SendQ exceeded" in carol.lines()
    assert {m.params[1] for m in find(alice.messages(), "401")} == {"bob"}


def test_sendq_counts_only_unflushed_output() -> None:
    net = Net(limits={"sendq": 4096})
    alice = net.register("alice")
    bob = net.register("bob")
    for _ in range(20):
        alice.send("PRIVMSG bob :" + "x" * 300)
        bob.lines()  # the shell flushed
    assert not net.is_closed(bob)


# ==================================================================================
# Plain-text port
# ==================================================================================


def test_plain_prompt_name_and_lobby(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat = net.connect(Kind.TEXTPORT)
    assert pat.lines() == ["Welcome to salon on test.salon.", "Your name:"]
    pat.send("alice")
    assert pat.lines() == ["* The name alice is taken. Try another. Your name:"]
    pat.send("ALICE")
    assert pat.lines() == ["* The name ALICE is taken. Try another. Your name:"]
    pat.send("9lives")
    assert "Your name:" in pat.lines()[0]
    pat.send("")
    assert pat.lines() == ["Your name:"]
    pat.send("pat")
    assert pat.lines() == [
        "Hello pat! Type /help for help, and bye, quit, exit or over to leave.",
        "* You are now in #lobby",
        "* In #lobby: @alice, pat",
    ]
    assert alice.lines() == [":pat!plain@127.0.0.1 JOIN #lobby"]
    assert "pat" in net.server.nicks


def test_plain_name_is_shared_with_irc(net: Net) -> None:
    net.plain("pat")
    conn = net.connect()
    conn.send("NICK pat")
    assert conn.numerics() == ["433"]


def test_plain_rendering(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat = net.plain("pat")
    bob = net.register("bob")
    bob.send("JOIN #lobby")
    assert pat.lines() == ["* bob joined #lobby"]
    alice.lines()
    alice.send("PRIVMSG #lobby :hello pat")
    assert pat.lines() == ["alice: hello pat"]
    alice.send("PRIVMSG #lobby :\x01ACTION waves\x01")
    assert pat.lines() == ["* alice waves"]
    alice.send("PRIVMSG pat :psst")
    assert pat.lines() == ["(private) alice: psst"]
    alice.send("TOPIC #lobby :Be nice")
    assert pat.lines() == ["* alice set the topic of #lobby: Be nice"]
    alice.send("PART #lobby :bye now")
    assert pat.lines() == ["* alice left #lobby (bye now)"]


def test_plain_talk_and_msg(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat.lines()
    pat.send("hi everyone")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :hi everyone"]
    pat.nothing()
    pat.send("//etc/passwd is a path")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :/etc/passwd is a path"]
    pat.send("/msg alice just you")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG alice :just you"]
    pat.send("/msg nobody hello")
    assert pat.lines() == ["* No such nick/channel: nobody"]
    pat.send("/msg alice")
    assert pat.lines() == ["* Usage: /msg <name> <text>"]


def test_plain_join_who_help(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #other")
    alice.lines()
    pat.send("/join other")
    assert pat.lines() == ["* You are now in #other", "* In #other: @alice, pat"]
    assert alice.lines() == [":pat!plain@127.0.0.1 JOIN #other"]
    pat.send("in the other room")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #other :in the other room"]
    pat.send("/who")
    assert pat.lines() == ["* In #other: @alice, pat"]
    bob = net.register("bob")
    bob.send("JOIN #lobby")
    pat.lines()
    bob.send("PRIVMSG #lobby :over here")
    assert pat.lines() == ["[#lobby] bob: over here"]
    pat.send("/help")
    lines = pat.lines()
    assert lines[0] == "Type a line and press Enter to talk to the room."
    assert any(line.startswith("/msg") for line in lines)
    assert lines[-1] == (
        "/quit [reason]       leave (so do bye, quit, exit and over on a line of their own)"
    )
    pat.send("/frobnicate")
    assert pat.lines() == ["* Unknown command /frobnicate. Type /help."]


def test_plain_bye(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat.lines()
    pat.send("bye")
    assert pat.lines() == ["Bye!"]
    assert net.is_closed(pat)
    assert alice.lines() == [":pat!plain@127.0.0.1 QUIT :Quit: bye"]
    assert "pat" not in net.server.nicks


def test_plain_default_channel_refuses(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.send("MODE #lobby +i")
    pat = net.plain()
    pat.lines()
    pat.send("pat")  # must not raise
    lines = pat.lines()
    assert any("+i" in line for line in lines), lines
    pat.send("/join #elsewhere")
    assert pat.lines()[0] == "* You are now in #elsewhere"


def test_plain_rendering_is_per_recipient(net: Net) -> None:
    alice = net.register("alice")
    pat = net.plain("pat")  # current room: #lobby
    sam = net.plain("sam")
    sam.send("/join #other")  # current room: #other, still in #lobby
    alice.send("JOIN #lobby")
    pat.lines()
    sam.lines()
    alice.send("PRIVMSG #lobby :hi")
    assert pat.lines() == ["alice: hi"]
    assert sam.lines() == ["[#lobby] alice: hi"]


def test_plain_user_is_told_about_shutdown(net: Net) -> None:
    pat = net.plain("pat")
    net.server.shutdown(net.now)
    assert any("shutting down" in line for line in pat.lines())


def test_plain_invalid_utf8(net: Net) -> None:
    pat = net.plain("pat")
    pat.send(b"caf\xe9")
    assert pat.lines() == ["* That line was not valid UTF-8; it was not sent."]


def test_plain_own_nick_change(net: Net) -> None:
    pat = net.plain("pat")
    pat.send("/nick patty")
    assert pat.lines() == ["* You are now known as patty"]


def test_plain_sees_irc_quit_and_nick(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    pat.lines()
    alice.send("NICK alicia")
    assert pat.lines() == ["* alice is now known as alicia"]
    alice.send("QUIT :later")
    assert pat.lines() == ["* alicia left (Quit: later)"]


# ==================================================================================
# Config plumbing used by these tests
# ==================================================================================


def test_make_config_defaults() -> None:
    cfg = make_config()
    assert cfg.server.name == "test.salon"
    assert cfg.flood.enabled is False
    assert make_config(flood={"enabled": True}).flood.rate == cfg.flood.rate


def test_messages_from_the_core_fit_the_wire(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("JOIN #c")
    alice.send("VERSION")
    alice.send("HELP")
    for line in alice.lines():
        body = line.split(" ", 1)[1] if line.startswith("@") else line
        assert len(body.encode()) + 2 <= 512, line


def test_message_value_is_what_the_core_sends(net: Net) -> None:
    alice = net.register("alice")
    net.server.send(alice.client, Message("NOTICE", ("alice", "direct"), "test.salon"))
    assert alice.lines() == [":test.salon NOTICE alice direct"]


def _glob_reference(mask: str, subject: str) -> bool:
    """Glob matching by dynamic programming: the slow, obviously right answer."""
    dp = [True] + [False] * len(subject)
    for ch in mask:
        if ch == "*":
            for i in range(1, len(subject) + 1):
                dp[i] = dp[i] or dp[i - 1]
        else:
            dp = [False] + [dp[i] and (ch == "?" or ch == subject[i]) for i in range(len(subject))]
    return dp[-1]


def test_masks_match_like_globs_and_never_backtrack_for_long() -> None:
    """WHO, LIST and ban masks are globs. A mask like ``*a*a*a*a*a*a*a*a*a*a*b`` against a
    long name must not freeze the server (it took seconds with ``.*`` per star)."""
    import random
    import time

    from salon.server.channel import mask_matches

    rng = random.Random(7)
    for _ in range(3000):
        mask = "".join(rng.choice("ab*?") for _ in range(rng.randrange(8)))
        subject = "".join(rng.choice("ab") for _ in range(rng.randrange(10)))
        assert mask_matches(mask, subject) == _glob_reference(mask, subject), (mask, subject)
    started = time.process_time()
    # With ".*" per star these took seconds (more stars or a longer name: hours).
    assert not mask_matches("*a" * 7 + "*b", "a" * 80)
    assert mask_matches("*a" * 7 + "*b", "a" * 80 + "b")
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize(
    ("line", "numeric"),
    [
        ("MODE #c +l ²", "696"),  # ERR_INVALIDMODEPARAM
        ("WHOWAS bob ²", "369"),
        ("WHOWAS bob --5", "369"),
        ("LIST >²", "323"),
        ("LIST C<²", "323"),
    ],
)
def test_numbers_that_are_not_ascii_digits_are_refused_not_a_crash(
    net: Net, line: str, numeric: str
) -> None:
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.lines()
    alice.send(line)
    numerics = alice.numerics()
    assert numeric in numerics and "400" not in numerics, numerics


@pytest.mark.parametrize(
    "line", [b"@label=x \x00\xff x", b":src :\xff", b"\xff" * 400], ids=["nul", "colon", "long"]
)
def test_an_unparsable_command_word_is_not_echoed(net: Net, line: bytes) -> None:
    """The error reply to an invalid line names its command only when it is one."""
    alice = net.register("alice", ("labeled-response", "batch", "message-tags"))
    alice.send(line)
    got = alice.messages()
    assert len(got) == 1 and got[0].params[0] == "*", got


def test_no_line_sent_is_over_512_bytes() -> None:
    """RFC 1459 2.3: 512 bytes a line, CR LF included. Replies and broadcasts that echo a
    client's words are cut to fit (found by fuzzing: PART, QUIT, TOPIC, KICK, AWAY, PONG,
    421 and MONITOR lists went to 514-643 bytes)."""

    def full(head: str) -> str:
        """``head`` and a text that fills the line a client may send (510 bytes)."""
        return head + "x " + "é" * ((510 - len(head.encode()) - 2) // 2)

    net = Net(limits={"nicklen": 30})
    alice = net.register("a" * 30, caps=["away-notify"])
    bob = net.register("b" * 30, caps=["away-notify"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
    alice.send("MONITOR + " + ",".join(f"{c}{'m' * 29}" for c in "cdefghijklmnopqrstuvwxyz"))
    for line in (
        full("TOPIC #c :"),
        full("AWAY :"),
        f"PRIVMSG {'a' * 30} :hi",
        full(f"FROBNICATE{'Z' * 200} :"),
        full("PING :"),
        "MONITOR L",
        full(f"KICK #c {'b' * 30} :"),
        "JOIN #" + "x" * 504,  # echoed as a middle parameter: 403 was 543 bytes
        "WHOIS " + "n" * 504,
        "WHOWAS " + "n" * 503,
        full("PART #c :"),
        full("QUIT :"),
    ):
        alice.send(line)
    sent = [line + b"\r\n" for conn in (alice, bob) for line in conn.raw().split(b"\r\n")[:-1]]
    assert len(sent) > 20
    bodies = [line.split(b" ", 1)[1] if line[:1] == b"@" else line for line in sent]
    assert [body for body in bodies if len(body) > 512] == []


def test_whois_lists_every_channel_over_several_lines() -> None:
    net = Net(limits={"channellen": 64})
    alice = net.register("alice")
    names = [f"#{i:02d}" + "f" * 60 for i in range(20)]
    for name in names:
        alice.send(f"JOIN {name}")
    bob = net.register("bob")
    bob.send("WHOIS alice")
    lines = [m for m in bob.messages() if m.command == "319"]
    assert len(lines) > 1
    shown = [word.lstrip("@") for m in lines for word in m.params[-1].split(" ")]
    assert sorted(shown) == names


def test_a_secret_channels_lists_are_for_its_members(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #s")
    alice.send("MODE #s +sbeI secret!*@* ex!*@* in!*@*")
    alice.lines()
    eve = net.register("eve")
    for mode, end in (("b", "368"), ("e", "349"), ("I", "347")):
        eve.send(f"MODE #s {mode}")
        assert eve.numerics() == [end], mode
        alice.send(f"MODE #s {mode}")
        assert len(alice.numerics()) == 2, mode


def test_a_quit_that_cannot_be_sent_still_removes_the_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug that makes a QUIT unserializable (a host with a space, say) is logged, and the
    user still leaves its channels and its nick: no ghost left behind."""
    net = Net()
    alice = net.register("alice")
    bob = net.register("bob")
    for conn in (alice, bob):
        conn.send("JOIN #c")
    bob.send("MONITOR + alice")
    bob.lines()
    alice.client.host = "forged host"  # what no code path may produce
    alice.client.update_prefix()
    net.server.disconnected(alice.client, net.now, "gone")
    assert "bug telling the channels of alice" in caplog.text
    assert "alice" not in net.server.nicks
    bob.send("NAMES #c")
    assert [m.params[-1] for m in bob.messages() if m.command == "353"] == ["bob"]
    net.register("alice")  # the nick is free again
