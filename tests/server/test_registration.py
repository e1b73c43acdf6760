"""Registration: NICK/USER, CAP negotiation, the welcome burst, QUIT.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import pytest
from corehelpers import Net, find, isupport, one

from salon.server.commands import COMMANDS, Command


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


def test_isupport_advertises_the_default_channel(net: Net) -> None:
    conn = net.register("alice")
    # Registered before: the burst went to conn.messages() of net.register; ask again.
    conn.send("VERSION")
    assert isupport(conn.messages())["salon.chat/DEFAULTCHANNEL"] == "#lobby"
    # A space cannot be in a channel name, but a backslash and an equals sign can: escaped
    # as modern.ircdocs.horse says, and a long name still leaves every 005 line in 512 bytes.
    name = "#a\\b=c" + "x" * 190
    net = Net(server={"default_channel": name}, limits={"channellen": 200})
    conn = net.connect()
    conn.send("NICK n")
    conn.send("USER n 0 * :n")
    msgs = conn.messages()
    assert isupport(msgs)["salon.chat/DEFAULTCHANNEL"] == "#a\\x5Cb\\x3Dc" + "x" * 190
    assert all(len(m.serialize()) <= 512 for m in msgs)


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
