"""PRIVMSG, NOTICE and their delivery rules.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

from corehelpers import Net, one, pair, trio

from salon.server.effects import Close


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
