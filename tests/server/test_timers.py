"""Timers: the registration and ping timeouts, on the injected clock.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

from corehelpers import Net, pair


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
