"""Queries: WHO, WHOIS, WHOWAS, LIST, LUSERS, MOTD, ISUPPORT and friends.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import pytest
from corehelpers import START, Net, find, one, pair


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
